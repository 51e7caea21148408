// Writes the seed corpora for wire_fuzzer: well-formed conversations (HELLO,
// requests with metadata and deadlines, replies with status and trailers,
// cancel, ping, goaway, an oversize frame, streams with window updates), and
// (--shm) for shm_fuzzer. Seeds named "valid-..." must reach a handler (or,
// for shm_fuzzer, get through validation): the replay driver checks.
// Usage: make_seed_corpus <dir> | make_seed_corpus --shm <dir>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "locus/frame.h"
#include "locus/wire.pb.h"
#include "transports/shm/shm_layout.h"

namespace {

std::string Frame(locus::FrameType type, uint32_t flags, uint64_t id, const std::string& meta,
                  const std::string& payload) {
  locus::FrameHeader h = locus::FrameHeader::Make(type, flags, id);
  h.meta_length = static_cast<uint32_t>(meta.size());
  h.payload_length = static_cast<uint32_t>(payload.size());
  return std::string(reinterpret_cast<const char*>(&h), sizeof(h)) + meta + payload;
}

std::string Hello(locus::FrameType type) {
  locus::wire::Hello hello;
  hello.set_min_protocol_version(1);
  hello.set_max_protocol_version(1);
  hello.set_implementation("seed");
  hello.mutable_host()->set_boot_id("boot");
  return Frame(type, 0, 0, hello.SerializeAsString(), "");
}

std::string Request(uint64_t id, const std::string& method, int64_t timeout_ns) {
  locus::wire::CallHeader header;
  header.set_method(method);
  header.set_timeout_ns(timeout_ns);
  auto* md = header.add_metadata();
  md->set_key("k");
  md->set_value("v");
  return Frame(locus::FrameType::kRequest, locus::kFlagHasMessage | locus::kFlagEndStream, id,
               header.SerializeAsString(), "payload");
}

std::string Response(uint64_t id, int code) {
  locus::wire::CallStatus status;
  status.set_code(code);
  status.set_message("msg");
  auto* md = status.add_trailing_metadata();
  md->set_key("t");
  md->set_value("v");
  return Frame(locus::FrameType::kResponse, code == 0 ? locus::kFlagHasMessage : 0, id,
               status.SerializeAsString(), code == 0 ? "reply" : "");
}

}  // namespace

// Inputs for shm_fuzzer: selector byte, two indices, then bytes. Seeds
// named "valid-..." must get through (fuzz_driver_main.cc checks that the
// target's LocusFuzzReached() is non-zero after each).
std::string ShmInput(uint8_t selector, uint64_t write_index, uint64_t read_index, const std::string& rest) {
  std::string out(1, static_cast<char>(selector));
  out.append(reinterpret_cast<const char*>(&write_index), 8);
  out.append(reinterpret_cast<const char*>(&read_index), 8);
  return out + rest;
}

// Ring bytes holding `records`, sealed as shm_fuzzer's rings expect.
std::string SealedRecords(const std::vector<std::string>& records) {
  std::string ring;
  for (const std::string& body : records) {
    locus::internal::ShmRecordHeader header{};
    header.length.store(static_cast<uint32_t>(body.size()));
    header.seal.store(locus::internal::ShmRecordSeal(ring.size(), locus::internal::kShmSealKeyMark));
    ring.append(reinterpret_cast<const char*>(&header), sizeof(header));
    ring += body;
    ring.resize((ring.size() + locus::internal::kShmRecordAlign - 1) & ~(locus::internal::kShmRecordAlign - 1));
  }
  return ring;
}

int WriteShmCorpus(const std::string& dir) {
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
  };
  const std::string hello = Hello(locus::FrameType::kHello);
  const std::string request = Request(1, "/fuzz.Echo/Say", 0);
  const std::string frames = hello + request;
  const std::string records = SealedRecords({hello, request});
  write("valid-ring_frames", ShmInput(0, records.size(), 0, records));
  // One frame cut across records, as a frame larger than the ring streams.
  const std::string split =
      SealedRecords({frames.substr(0, 7), frames.substr(7, 40), frames.substr(47)});
  write("valid-ring_split_frame", ShmInput(0, split.size(), 0, split));
  write("ring_overrun", ShmInput(0, 1u << 20, 0, records));
  write("ring_unsealed", ShmInput(0, 48, 0, frames));
  // A sealed record claiming more than the ring holds.
  std::string too_long = SealedRecords({hello});
  const uint32_t claimed = 1u << 20;
  too_long.replace(0, sizeof(claimed), reinterpret_cast<const char*>(&claimed), sizeof(claimed));
  write("ring_record_too_long", ShmInput(0, too_long.size(), 0, too_long));
  // Setup: the region header's first 40 bytes (shm_fuzzer's kRegionBytes),
  // then the TRANSPORT_SETUP meta.
  locus::wire::ShmSetup setup;
  setup.set_layout_version(locus::internal::kShmLayoutVersion);
  setup.set_ring_capacity(1 << 20);
  setup.set_bulk_capacity(16u << 20);
  setup.set_region_size(4096 + (2u << 20) + (32u << 20));
  auto region = [&](uint32_t magic, uint64_t ring, uint64_t bulk, uint64_t seal_key) {
    locus::internal::ShmRegionHeader header{};
    header.magic = magic;
    header.version = locus::internal::kShmLayoutVersion;
    header.ring_capacity = ring;
    header.region_size = 4096 + 2 * ring + 2 * bulk;
    header.bulk_capacity = bulk;
    header.seal_key = seal_key;
    return std::string(reinterpret_cast<const char*>(&header), 40);
  };
  const uint64_t key = locus::internal::kShmSealKeyMark | 0x5eed;
  const uint32_t magic = locus::internal::kShmMagic;
  write("valid-setup_ok", ShmInput(1, 0, 0, region(magic, 1 << 20, 16u << 20, key) + setup.SerializeAsString()));
  write("setup_seal_key_unmarked",
        ShmInput(1, 0, 0, region(magic, 1 << 20, 16u << 20, 0x5eed) + setup.SerializeAsString()));
  write("setup_region_ring_differs",
        ShmInput(1, 0, 0, region(magic, 1 << 19, 16u << 20, key) + setup.SerializeAsString()));
  write("setup_region_bulk_differs",
        ShmInput(1, 0, 0, region(magic, 1 << 20, 8u << 20, key) + setup.SerializeAsString()));
  write("setup_region_bad_magic",
        ShmInput(1, 0, 0, region(magic ^ 1, 1 << 20, 16u << 20, key) + setup.SerializeAsString()));
  setup.set_bulk_capacity(0);
  setup.set_region_size(4096 + (2u << 20));
  write("valid-setup_no_bulk", ShmInput(1, 0, 0, region(magic, 1 << 20, 0, key) + setup.SerializeAsString()));
  setup.set_bulk_capacity(1000);
  write("setup_bad_bulk", ShmInput(1, 0, 0, region(magic, 1 << 20, 1000, key) + setup.SerializeAsString()));
  setup.set_ring_capacity(3000);
  write("setup_bad_capacity", ShmInput(1, 0, 0, region(magic, 3000, 1000, key) + setup.SerializeAsString()));
  // Payload references (offset, length) into a 1 MiB bulk area, and a
  // release count.
  auto refs = [](std::initializer_list<std::pair<uint64_t, uint64_t>> list) {
    std::string out;
    for (const auto& [offset, length] : list) {
      out.append(reinterpret_cast<const char*>(&offset), 8);
      out.append(reinterpret_cast<const char*>(&length), 8);
    }
    return out;
  };
  write("valid-bulk_ok", ShmInput(2, 0, 1, refs({{2048, 40000}, {43008, 1000}})));
  write("bulk_outside", ShmInput(2, 0, 99, refs({{1u << 20, 1}, {~uint64_t{0}, 2}})));
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--shm") return WriteShmCorpus(argv[2]);
  if (argc != 2) return 2;
  std::string dir = argv[1];
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
  };
  using locus::FrameType;
  locus::wire::GoAway goaway;
  goaway.set_code(14);
  goaway.set_reason("bye");
  write("valid-server_conversation",
        Hello(FrameType::kHello) + Request(1, "/fuzz.Echo/Say", 0) +
            Request(3, "/fuzz.Echo/Say", 1000000000) + Request(5, "/no.Such/Method", 0) +
            Frame(FrameType::kCancel, 0, 3, "", "") + Frame(FrameType::kPing, 0, 0, "", "12345678") +
            Frame(FrameType::kRequest, locus::kFlagHasMessage | locus::kFlagOneway, 7,
                  "\x0a\x0e/fuzz.Echo/Say", "x"));
  write("client_conversation",
        Hello(FrameType::kHelloAck) + Response(1, 0) + Response(3, 5) +
            Frame(FrameType::kGoAway, 0, 0, goaway.SerializeAsString(), "") +
            Frame(FrameType::kPong, 0, 0, "", ""));
  write("oversize", Hello(FrameType::kHello) +
                        Frame(FrameType::kRequest, locus::kFlagHasMessage, 9, "", std::string(70000, 'z')) +
                        Request(11, "/fuzz.Echo/Say", 0));
  // Streams: a bidirectional call with messages, a half-close, window
  // updates and a cancel (server side); messages, a window update and the
  // final status for the client's open stream, call 1 (client side).
  locus::wire::CallHeader chat;
  chat.set_method("/fuzz.Echo/Chat");
  locus::wire::WindowUpdate window;
  window.set_increment(8192);
  const std::string message = locus::wire::CallStatus().SerializeAsString() + "\x08\x02";
  write("valid-server_stream",
        Hello(FrameType::kHello) + Frame(FrameType::kRequest, 0, 1, chat.SerializeAsString(), "") +
            Frame(FrameType::kMessage, locus::kFlagHasMessage, 1, "", message) +
            Frame(FrameType::kWindowUpdate, 0, 1, window.SerializeAsString(), "") +
            Frame(FrameType::kMessage, locus::kFlagHasMessage, 1, "", std::string(3000, '\0')) +
            Frame(FrameType::kMessage, locus::kFlagHasMessage, 1, "", std::string(3000, '\0')) +
            Frame(FrameType::kMessage, locus::kFlagEndStream, 1, "", "") +
            Frame(FrameType::kRequest, 0, 3, chat.SerializeAsString(), "") +
            Frame(FrameType::kCancel, 0, 3, "", ""));
  write("client_stream",
        Hello(FrameType::kHelloAck) +
            Frame(FrameType::kMessage, locus::kFlagHasMessage, 1, "", message) +
            Frame(FrameType::kWindowUpdate, 0, 1, window.SerializeAsString(), "") +
            Frame(FrameType::kMessage, locus::kFlagHasMessage, 1, "", std::string(5000, '\0')) +
            Response(1, 0));
  // Remote objects (docs/wire.md "Remote objects"): a peer that speaks RMI
  // and offers a bootstrap object; calls on objects (unknown ids: NOT_FOUND);
  // references counted in a request's and a reply's meta; the object table
  // service's Release and Adopt; then an ordinary call that reaches a handler.
  locus::wire::Hello rmi_hello;
  rmi_hello.set_min_protocol_version(1);
  rmi_hello.set_max_protocol_version(1);
  rmi_hello.add_features("rmi/1");
  rmi_hello.mutable_host()->set_process_nonce(0x77);
  rmi_hello.mutable_bootstrap()->set_service("fuzz.Echo");
  rmi_hello.mutable_bootstrap()->set_object_id(5);
  rmi_hello.mutable_bootstrap()->set_token(std::string(16, 'b'));
  rmi_hello.mutable_bootstrap()->set_owner_process(0x77);
  locus::wire::CallHeader on_object;
  on_object.set_method("/fuzz.Echo/Say");
  on_object.set_object_id(99);
  on_object.set_object_token(std::string(16, 'x'));
  auto* counted = on_object.add_counted_refs();
  counted->set_object_id(6);
  counted->set_token(std::string(16, 'c'));
  counted->set_count(2);
  locus::wire::CallHeader counting_call;
  counting_call.set_method("/fuzz.Echo/Say");
  *counting_call.add_counted_refs() = *counted;
  locus::wire::CallHeader release_header;
  release_header.set_method("/locus.rmi.Objects/Release");
  locus::wire::ReleaseObjects release;
  auto* released = release.add_objects();
  released->set_object_id(5);
  released->set_count(1);
  locus::wire::CallHeader adopt_header;
  adopt_header.set_method("/locus.rmi.Objects/Adopt");
  locus::wire::AdoptObject adopt;
  adopt.set_object_id(99);
  adopt.set_token(std::string(16, 'x'));
  const uint32_t unary = locus::kFlagHasMessage | locus::kFlagEndStream;
  write("valid-rmi_server_conversation",
        Frame(FrameType::kHello, 0, 0, rmi_hello.SerializeAsString(), "") +
            Frame(FrameType::kRequest, unary, 1, on_object.SerializeAsString(), "payload") +
            Frame(FrameType::kRequest, unary, 3, counting_call.SerializeAsString(), "payload") +
            Frame(FrameType::kRequest, unary | locus::kFlagOneway, 5, release_header.SerializeAsString(),
                  release.SerializeAsString()) +
            Frame(FrameType::kRequest, unary, 7, adopt_header.SerializeAsString(), adopt.SerializeAsString()) +
            Request(9, "/fuzz.Echo/Say", 0));
  locus::wire::CallStatus counted_reply;
  *counted_reply.add_counted_refs() = *counted;
  write("rmi_client_conversation",
        Frame(FrameType::kHelloAck, 0, 0, rmi_hello.SerializeAsString(), "") +
            Frame(FrameType::kResponse, locus::kFlagHasMessage, 1, counted_reply.SerializeAsString(), "reply") +
            Frame(FrameType::kResponse, locus::kFlagHasMessage, 41, counted_reply.SerializeAsString(), "late"));
  // Initial metadata and status details (docs/wire.md "HEADERS", CallStatus
  // fields 5 and 6): a peer that speaks "headers/1"; on the server side,
  // calls with upper-case metadata keys, one the interceptor rejects, and a
  // stream whose handler sends initial metadata; on the client side,
  // HEADERS for the open stream (again, then malformed), and replies with
  // initial metadata and details for the unary call (3) and the stream (1).
  locus::wire::Hello headers_hello;
  headers_hello.set_min_protocol_version(1);
  headers_hello.set_max_protocol_version(1);
  headers_hello.add_features("headers/1");
  headers_hello.set_stream_window_bytes(65536);
  locus::wire::CallHeader upper;
  upper.set_method("/fuzz.Echo/Say");
  auto* upper_md = upper.add_metadata();
  upper_md->set_key("X-Request-ID");
  upper_md->set_value("7");
  locus::wire::CallHeader rejected;
  rejected.set_method("/fuzz.Echo/Say");
  auto* reject_md = rejected.add_metadata();
  reject_md->set_key("Reject");
  reject_md->set_value("yes");
  write("valid-server_headers_conversation",
        Frame(FrameType::kHello, 0, 0, headers_hello.SerializeAsString(), "") +
            Frame(FrameType::kRequest, unary, 1, upper.SerializeAsString(), "payload") +
            Frame(FrameType::kRequest, unary, 3, rejected.SerializeAsString(), "payload") +
            Frame(FrameType::kRequest, 0, 5, chat.SerializeAsString(), "") +
            Frame(FrameType::kMessage, locus::kFlagHasMessage, 5, "", message) +
            Frame(FrameType::kMessage, locus::kFlagEndStream, 5, "", "") +
            Frame(FrameType::kHeaders, 0, 5, "", ""));
  locus::wire::InitialMetadata initial;
  auto* initial_md = initial.add_metadata();
  initial_md->set_key("Server-Version");
  initial_md->set_value("1");
  locus::wire::CallStatus detailed;
  detailed.set_code(9);
  detailed.set_message("failed precondition");
  *detailed.add_initial_metadata() = *initial_md;
  auto* detail = detailed.add_details();
  detail->set_type_url("type.googleapis.com/google.rpc.ErrorInfo");
  detail->set_value(std::string("\x0a\x03why", 5));
  auto* trailer = detailed.add_trailing_metadata();
  trailer->set_key("T");
  trailer->set_value("v");
  locus::wire::CallStatus ok_with_initial;
  *ok_with_initial.add_initial_metadata() = *initial_md;
  write("client_headers",
        Frame(FrameType::kHelloAck, 0, 0, headers_hello.SerializeAsString(), "") +
            Frame(FrameType::kHeaders, 0, 1, initial.SerializeAsString(), "") +
            Frame(FrameType::kHeaders, 0, 1, initial.SerializeAsString(), "") +
            Frame(FrameType::kMessage, locus::kFlagHasMessage, 1, "", message) +
            Frame(FrameType::kHeaders, 0, 3, initial.SerializeAsString(), "") +
            Frame(FrameType::kResponse, 0, 3, detailed.SerializeAsString(), "") +
            Frame(FrameType::kResponse, 0, 1, ok_with_initial.SerializeAsString(), ""));
  write("client_bad_headers",
        Frame(FrameType::kHelloAck, 0, 0, headers_hello.SerializeAsString(), "") +
            Frame(FrameType::kHeaders, 0, 1, "\xff\xff\x01", "") +
            Frame(FrameType::kResponse, locus::kFlagHasMessage, 3, ok_with_initial.SerializeAsString(), "x"));
  write("hello_only", Hello(FrameType::kHello));
  write("no_handshake", Request(1, "/fuzz.Echo/Say", 0));
  return 0;
}
