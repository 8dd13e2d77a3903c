import Foundation
import Testing

@testable import FluxNode

@Suite("cluster.conf")
struct NodeConfigTests {
    let base = URL(fileURLWithPath: "/etc/flux")

    @Test("an empty file runs a single node with every default of CONTRACT §1")
    func defaults() throws {
        let c = try NodeConfig.parse(toml: "", baseDirectory: base)
        #expect(c.http == HostPort(host: "0.0.0.0", port: 8080))
        #expect(c.admin == HostPort(host: "127.0.0.1", port: 8081))
        #expect(c.wire == HostPort(host: "127.0.0.1", port: 7400))
        #expect(c.seeds.isEmpty)
        #expect(c.clusterSecret == nil)
        #expect(c.shards == 256)
        #expect(c.journal == "sqlite:.flux/journal.db")
        #expect(c.journalFlushMs == 2)
        #expect(c.journalBatch == 1024)
        #expect(c.lendersDir == "lenders/")
        #expect(c.rules == "rules.json")
        #expect(c.apiKeys.isEmpty)
        #expect(c.adminToken == nil)
        #expect(c.swim == SwimSettings())
        #expect(c.nodeID.hasSuffix("-7400"))
    }

    @Test("every key is read")
    func everyKey() throws {
        let toml = """
            node_id = "n1"
            http = "127.0.0.1:9000"
            admin = "127.0.0.1:9001"
            wire = "10.0.0.1:7401"
            seeds = ["10.0.0.2:7400", "10.0.0.3:7400"]
            cluster_secret = "0123456789abcdef"
            shards = 64
            journal = "postgres://flux@db/flux"
            journal_flush_ms = 5
            journal_batch = 256
            lenders_dir = "conn"
            rules = "/abs/rules.json"
            api_keys = ["merchant-key-1"]
            admin_token = "ops"
            [swim]
            probe_interval_ms = 500
            ping_timeout_ms = 200
            indirect_probes = 2
            suspicion_mult = 3
            suspicion_max_mult = 5
            """
        let c = try NodeConfig.parse(toml: toml, baseDirectory: base)
        #expect(c.nodeID == "n1")
        #expect(c.seeds.count == 2)
        #expect(c.shards == 64)
        #expect(c.journal == "postgres://flux@db/flux")
        #expect(c.apiKeys == ["merchant-key-1"])
        #expect(c.swim.probeIntervalMs == 500)
        #expect(c.swim.suspicionMaxMult == 5)
        #expect(c.resolve(c.lendersDir).path == "/etc/flux/conn")
        #expect(c.resolve(c.rules).path == "/abs/rules.json")
    }

    @Test(
        "an unknown key or a bad value stops start-up naming the key",
        arguments: [
            ("colour = 1", "colour"),
            ("shards = 0", "shards"),
            ("shards = \"many\"", "shards"),
            ("http = \"localhost\"", "http"),
            ("wire = \"h:70000\"", "wire"),
            ("seeds = [\"a:1\", 3]", "seeds[1]"),
            ("cluster_secret = \"short\"", "cluster_secret"),
            ("journal = \"mysql://x\"", "journal"),
            ("journal_batch = 0", "journal_batch"),
            ("api_keys = [\"k\"]", "api_keys[0]"),
            ("[swim]\nprobe_interval_ms = 100\nping_timeout_ms = 200", "swim.ping_timeout_ms"),
            ("[swim]\nfanout = 3", "swim.fanout"),
            ("node_id = \"has space\"", "node_id"),
        ])
    func refused(toml: String, key: String) {
        #expect {
            _ = try NodeConfig.parse(toml: toml, baseDirectory: base)
        } throws: { error in
            (error as? ConfigError)?.key == key
        }
    }

    @Test("TOML that does not parse is refused with its position")
    func notTOML() {
        #expect {
            _ = try NodeConfig.parse(toml: "http = = 3", baseDirectory: base)
        } throws: { error in
            (error as? ConfigError)?.message.contains("line 1") == true
        }
    }

    @Test("host:port parsing")
    func hostPort() {
        #expect(HostPort("127.0.0.1:80") == HostPort(host: "127.0.0.1", port: 80))
        #expect(HostPort("[::1]:8080") == HostPort(host: "::1", port: 8080))
        #expect(HostPort("nohost") == nil)
        #expect(HostPort(":80") == nil)
        #expect(HostPort("h:-1") == nil)
    }
}
