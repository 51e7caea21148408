// The typed accessors locusc generated from codegen/testdata/refs.proto,
// end to end through the runtime: a setter exports an object into a
// reference field (locus::SetRef), a getter turns the field into a
// locus::Remote (locus::Remote<T>::From) whose calls reach the object in
// this process.
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "kv/session.locus.h"
#include "locus/object.h"
#include "nopackage.locus.h"
#include "refs.locus.h"

namespace {

class SessionImpl final : public kv::session::Session::Service {
 public:
  explicit SessionImpl(std::string name) : name_(std::move(name)) {}
  absl::Status Get(locus::ServerContext*, const kv::session::GetRequest* request,
                   kv::session::GetReply* reply) override {
    reply->set_value(name_ + ":" + request->key());
    return absl::OkStatus();
  }

 private:
  std::string name_;
};

class StoreImpl final : public kv::Store::Service {
 public:
  explicit StoreImpl(std::string name) : name_(std::move(name)) {}
  absl::Status Lookup(locus::ServerContext*, const kv::session::GetRequest* request,
                      kv::session::GetReply* reply) override {
    reply->set_value(name_ + ":" + request->key());
    return absl::OkStatus();
  }

 private:
  std::string name_;
};

class ListenerImpl final : public kv::Listener::Service {
 public:
  absl::Status Changed(locus::ServerContext*, const google::protobuf::Empty*,
                       google::protobuf::Empty*) override {
    changed_.Notify();
    return absl::OkStatus();
  }
  bool WaitForChange() { return changed_.WaitForNotificationWithTimeout(absl::Seconds(10)); }

 private:
  absl::Notification changed_;
};

class OracleImpl final : public Oracle::Service {
 public:
  absl::Status Ask(locus::ServerContext*, const Question* question, Answer* answer) override {
    answer->set_value(static_cast<int>(question->text().size()));
    return absl::OkStatus();
  }
};

kv::session::GetRequest Key(const std::string& key) {
  kv::session::GetRequest request;
  request.set_key(key);
  return request;
}

template <typename ServiceT>
std::string Lookup(absl::StatusOr<locus::Remote<ServiceT>> remote, const std::string& key) {
  if (!remote.ok()) return remote.status().ToString();
  absl::StatusOr<kv::session::GetReply> reply = (*remote)->Lookup(Key(key));
  return reply.ok() ? reply->value() : reply.status().ToString();
}

TEST(ObjectRefAccessors, SetThenGetCallsTheObject) {
  kv::OpenReply reply;
  ASSERT_TRUE(
      kv::OpenReplyRefs::set_session(&reply, std::make_shared<SessionImpl>("s1")).ok());
  EXPECT_EQ(reply.session().service(), "kv.session.Session");
  EXPECT_NE(reply.session().object_id(), 0u);

  absl::StatusOr<locus::Remote<kv::session::Session>> session =
      kv::OpenReplyRefs::session(reply);
  ASSERT_TRUE(session.ok()) << session.status();
  absl::StatusOr<kv::session::GetReply> got = (*session)->Get(Key("k"));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->value(), "s1:k");

  // A service without a package, from a file imported indirectly.
  ASSERT_TRUE(kv::OpenReplyRefs::set_oracle(&reply, std::make_shared<OracleImpl>()).ok());
  absl::StatusOr<locus::Remote<Oracle>> oracle = kv::OpenReplyRefs::oracle(reply);
  ASSERT_TRUE(oracle.ok()) << oracle.status();
  Question question;
  question.set_text("why?");
  absl::StatusOr<Answer> answer = (*oracle)->Ask(question);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->value(), 4);
}

TEST(ObjectRefAccessors, UnsetFieldIsNotFound) {
  kv::OpenReply reply;
  absl::StatusOr<locus::Remote<kv::session::Session>> session =
      kv::OpenReplyRefs::session(reply);
  EXPECT_EQ(session.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(session.status().message(), "kv.OpenReply.session is not set");
}

TEST(ObjectRefAccessors, RepeatedFieldsAddAndIndex) {
  kv::OpenReply reply;
  ASSERT_TRUE(kv::OpenReplyRefs::add_replicas(&reply, std::make_shared<StoreImpl>("a")).ok());
  ASSERT_TRUE(kv::OpenReplyRefs::add_replicas(&reply, std::make_shared<StoreImpl>("b")).ok());
  ASSERT_EQ(reply.replicas_size(), 2);
  EXPECT_EQ(Lookup(kv::OpenReplyRefs::replicas(reply, 0), "x"), "a:x");
  EXPECT_EQ(Lookup(kv::OpenReplyRefs::replicas(reply, 1), "y"), "b:y");

  for (int index : {-1, 2}) {
    EXPECT_EQ(kv::OpenReplyRefs::replicas(reply, index).status().code(),
              absl::StatusCode::kOutOfRange)
        << index;
  }

  // A failed add_ leaves no empty reference behind.
  EXPECT_FALSE(kv::OpenReplyRefs::add_replicas(&reply, nullptr).ok());
  EXPECT_EQ(reply.replicas_size(), 2);
}

TEST(ObjectRefAccessors, OneofMemberWithKeywordName) {
  kv::Tree tree;
  auto listener = std::make_shared<ListenerImpl>();
  ASSERT_TRUE(kv::TreeRefs::set_new_(&tree, listener).ok());
  EXPECT_EQ(tree.payload_case(), kv::Tree::kNew);
  absl::StatusOr<locus::Remote<kv::Listener>> remote = kv::TreeRefs::new_(tree);
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_TRUE((*remote)->Changed(google::protobuf::Empty()).ok());
  EXPECT_TRUE(listener->WaitForChange());

  // Another member of the oneof set: the reference is gone.
  tree.set_label("leaf");
  EXPECT_EQ(kv::TreeRefs::new_(tree).status().code(), absl::StatusCode::kNotFound);
}

TEST(ObjectRefAccessors, GetterChecksTheService) {
  // kv.Tree.leaf is a kv.Store; a reference to a kv.Listener is refused.
  kv::Tree tree;
  ASSERT_TRUE(locus::SetRef(tree.mutable_leaf(), std::make_shared<ListenerImpl>()).ok());
  EXPECT_EQ(kv::TreeRefs::leaf(tree).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ObjectRefAccessors, NestedAndMangledNames) {
  kv::Holder::Slot slot;
  ASSERT_TRUE(kv::Holder_SlotRefs::set_store(&slot, std::make_shared<StoreImpl>("slot")).ok());
  EXPECT_EQ(Lookup(kv::Holder_SlotRefs::store(slot), "k"), "slot:k");

  kv::Ticket ticket;
  ASSERT_TRUE(kv::TicketRefs_::set_store(&ticket, std::make_shared<StoreImpl>("ticket")).ok());
  EXPECT_EQ(Lookup(kv::TicketRefs_::store(ticket), "k"), "ticket:k");
}

}  // namespace
