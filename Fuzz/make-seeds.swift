// Writes the seed corpus (Fuzz/corpus/*.bin): one length-prefixed frame of
// every message type, a compressed frame, and a few broken ones.
// Built and run by Fuzz/run-fuzz.sh --seeds.
import Foundation

@main
struct MakeSeeds {
    static func main() throws {
        let dir = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "corpus"
        let codec = WireFrameCodec()
        let nonce = [UInt8](repeating: 0x5A, count: 32)
        let update = WireMemberUpdate(memberID: "node-b", address: "127.0.0.1:7401", incarnation: 3, status: .suspect)
        let messages: [(String, any WireMessage)] = [
            ("hello", WireHello(nodeID: "node-a", challenge: nonce)),
            ("challenge", WireChallenge(nodeID: "node-b", challenge: nonce)),
            ("proof", WireProof(mac: nonce)),
            ("ping", WirePing(from: "node-a", incarnation: 7, updates: [update])),
            ("ack", WireAck(from: "node-b", incarnation: 8, updates: [update, update])),
            ("ping-req", WirePingReq(from: "a", target: "b", targetAddress: "127.0.0.1:7402", updates: [update])),
            ("indirect-ack", WireIndirectAck(target: "b", reachable: true, updates: [])),
            (
                "forward",
                WireForward(
                    method: "POST", path: "/v1/checkouts",
                    headers: [WireHeader(name: "content-type", value: "application/json")],
                    body: Array("{\"amount_paise\":1500000}".utf8))
            ),
            ("forward-reply", WireForwardReply(status: 201, headers: [], body: Array("{}".utf8))),
            ("config-publish", WireConfigPublish(kind: "rules", version: 3, json: Array("{\"rules\":[]}".utf8))),
            ("config-pull", WireConfigPull(known: [.init(kind: "rules", version: 2)])),
            ("config-state", WireConfigState(entries: [WireConfigPublish(kind: "lenders", version: 1, json: [])])),
            ("shard-handover", WireShardHandover(shard: 17, epoch: 4, fromNode: "a", toNode: "b", snapshot: [1, 2])),
            ("shard-handover-ack", WireShardHandoverAck(shard: 17, epoch: 4, accepted: true)),
            ("error", WireErrorReply(code: "busy", message: "later")),
        ]
        func framed(_ body: [UInt8]) -> [UInt8] {
            let n = UInt32(body.count)
            return [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + body
        }
        func write(_ name: String, _ bytes: [UInt8]) throws {
            try Data(bytes).write(to: URL(fileURLWithPath: "\(dir)/\(name).bin"))
        }
        var all: [UInt8] = []
        for (i, (name, message)) in messages.enumerated() {
            let envelope = WireEnvelope(
                type: type(of: message).type, correlationID: UInt64(i), payload: message.encodedPayload())
            let bytes = framed(try codec.encode(envelope))
            all += bytes
            try write(name, bytes)
        }
        try write("all", all)
        let big = WireForward(method: "PUT", path: "/big", body: Array(String(repeating: "abcd", count: 600).utf8))
        try write("compressed", framed(try codec.encode(WireEnvelope(big, correlationID: 99))))
        try write("too-long", [0xFF, 0xFF, 0xFF, 0xFF, 0xF1])
        try write("short-header", [0, 0, 0, 3, 0xF1, 0, 1])
        try write("bad-lz4", framed([0xF1, 0, 0x20, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x10, 0, 0xFF, 0xFF]))
    }
}
