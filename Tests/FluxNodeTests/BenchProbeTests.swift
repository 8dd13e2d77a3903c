import Foundation
import Testing

@testable import FluxNode

/// The bench's disk probe: timed 4 KiB appends with fdatasync in a scratch file it removes.
@Suite struct BenchProbeTests {
    @Test func timesEachCommitAndCleansUp() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flux-probe-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let probe = try #require(BenchCommand.fsyncProbe(in: directory, count: 5))
        #expect(probe.count == 5)
        #expect(probe.p50Ms > 0)
        #expect(probe.p50Ms <= probe.p99Ms)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
    }

    @Test func aFolderThatCannotBeWrittenGivesNoFigure() {
        #expect(BenchCommand.fsyncProbe(in: URL(fileURLWithPath: "/nonexistent-\(UUID().uuidString)")) == nil)
    }
}
