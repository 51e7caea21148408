// Code that locusc generated at build time from codegen/testdata/refs.proto
// (object references): the types of the typed accessors, checked at compile
// time, and RpcMethod::has_attachments. Calls nothing of the runtime; the
// accessors themselves run in object_refs_accessors_test.cc.
#include <memory>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "acme/storage/v1/storage.locus.h"
#include "gtest/gtest.h"
#include "kv/session.locus.h"
#include "locus/object.h"
#include "nopackage.locus.h"
#include "options.locus.h"
#include "refs.locus.h"

namespace {

template <typename ServiceT, typename MessageT>
using Getter = absl::StatusOr<locus::Remote<ServiceT>> (*)(const MessageT&,
                                                           const locus::ChannelOptions&);
template <typename ServiceT, typename MessageT>
using IndexedGetter = absl::StatusOr<locus::Remote<ServiceT>> (*)(const MessageT&, int,
                                                                  const locus::ChannelOptions&);
template <typename ServiceT, typename MessageT>
using Setter = absl::Status (*)(MessageT*, std::shared_ptr<typename ServiceT::Service>,
                                locus::ExportOptions);

// A reference to a service of the same file.
static_assert(std::is_same_v<decltype(&kv::OpenRequestRefs::listener),
                             Getter<kv::Listener, kv::OpenRequest>>);
static_assert(std::is_same_v<decltype(&kv::OpenRequestRefs::set_listener),
                             Setter<kv::Listener, kv::OpenRequest>>);
// Of an imported file, in another package.
static_assert(std::is_same_v<decltype(&kv::OpenReplyRefs::session),
                             Getter<kv::session::Session, kv::OpenReply>>);
static_assert(std::is_same_v<decltype(&kv::OpenReplyRefs::set_session),
                             Setter<kv::session::Session, kv::OpenReply>>);
// Repeated: an indexed getter and add_.
static_assert(std::is_same_v<decltype(&kv::OpenReplyRefs::replicas),
                             IndexedGetter<kv::Store, kv::OpenReply>>);
static_assert(std::is_same_v<decltype(&kv::OpenReplyRefs::add_replicas),
                             Setter<kv::Store, kv::OpenReply>>);
// Of a file imported only through another (and without a package).
static_assert(std::is_same_v<decltype(&kv::OpenReplyRefs::oracle), Getter<Oracle, kv::OpenReply>>);
static_assert(std::is_same_v<decltype(&kv::OpenReplyRefs::set_oracle),
                             Setter<Oracle, kv::OpenReply>>);
// A recursive message; a keyword field in a oneof gets protoc's name.
static_assert(std::is_same_v<decltype(&kv::TreeRefs::leaf), Getter<kv::Store, kv::Tree>>);
static_assert(std::is_same_v<decltype(&kv::TreeRefs::set_leaf), Setter<kv::Store, kv::Tree>>);
static_assert(std::is_same_v<decltype(&kv::TreeRefs::new_), Getter<kv::Listener, kv::Tree>>);
static_assert(std::is_same_v<decltype(&kv::TreeRefs::set_new_), Setter<kv::Listener, kv::Tree>>);
// A nested message: protoc's class name plus "Refs".
static_assert(std::is_same_v<decltype(&kv::Holder_SlotRefs::store),
                             Getter<kv::Store, kv::Holder_Slot>>);
static_assert(std::is_same_v<decltype(&kv::Holder_SlotRefs::set_store),
                             Setter<kv::Store, kv::Holder_Slot>>);
// kv.TicketRefs is a message, so kv.Ticket's accessors are TicketRefs_.
static_assert(std::is_base_of_v<google::protobuf::Message, kv::TicketRefs>);
static_assert(std::is_same_v<decltype(&kv::TicketRefs_::store), Getter<kv::Store, kv::Ticket>>);
static_assert(std::is_same_v<decltype(&kv::TicketRefs_::set_store),
                             Setter<kv::Store, kv::Ticket>>);

// The reference fields themselves are plain protobuf messages.
static_assert(std::is_same_v<decltype(std::declval<kv::OpenReply>().session()),
                             const locus::ObjectRef&>);
static_assert(std::is_same_v<decltype(std::declval<kv::ReadReply_Body_Handle>().fd()),
                             const locus::FileDescriptor&>);

TEST(ObjectRefsCodegen, HasAttachmentsOnlyWhereTypesHoldRefsOrFds) {
  struct Expected {
    const locus::RpcMethod& method;
    bool has_attachments;
  };
  const Expected methods[] = {
      {kv::Store::kMethodOpen, true},     // both sides, directly
      {kv::Store::kMethodPing, false},    // Empty
      {kv::Store::kMethodWalk, true},     // recursive request
      {kv::Store::kMethodFollow, false},  // recursive, no refs
      {kv::Store::kMethodRead, true},     // a FileDescriptor two levels down
      {kv::Store::kMethodBrowse, true},   // map values, oneof, mutual recursion
      {kv::Store::kMethodSlots, false},   // a nested type with refs, no field of it
      {kv::Store::kMethodIssue, true},    // the response of a client stream
      {kv::Store::kMethodLookup, false},
      {kv::Listener::kMethodChanged, false},
      {kv::session::Session::kMethodGet, false},
  };
  for (const Expected& expected : methods) {
    EXPECT_EQ(expected.method.has_attachments, expected.has_attachments)
        << expected.method.full_name;
  }
  ASSERT_EQ(kv::Store::kMethodCount, 9);
  EXPECT_EQ(kv::Store::kMethods[5]->kind, locus::RpcKind::kServerStreaming);
  EXPECT_TRUE(kv::Store::kMethods[5]->has_attachments);
  EXPECT_TRUE(kv::Listener::kMethodChanged.oneway);

  // Files without locus/rmi.proto are unaffected.
  for (int i = 0; i < acme::storage::v1::BlobStore::kMethodCount; ++i) {
    EXPECT_FALSE(acme::storage::v1::BlobStore::kMethods[i]->has_attachments)
        << acme::storage::v1::BlobStore::kMethods[i]->full_name;
  }
  EXPECT_FALSE(opts::Logger::kMethodWrite.has_attachments);
  EXPECT_FALSE(Oracle::kMethodAsk.has_attachments);
}

}  // namespace
