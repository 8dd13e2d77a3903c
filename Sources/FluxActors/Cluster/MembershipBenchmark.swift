import FluxWire
import Foundation
import Logging
import Synchronization

/// One in-process SWIM node on loopback: a real `WireServer` and a `ClusterMembership`, as a node
/// runs them (used by the detection benchmark and the membership tests).
public final class LoopbackMember: Sendable {
    public let membership: ClusterMembership
    public let server: WireServer
    public var wire: String { membership.configuration.wire }
    private let closed = Mutex(false)

    private final class Box: Sendable {
        let membership = Mutex<ClusterMembership?>(nil)
    }

    private init(membership: ClusterMembership, server: WireServer) {
        self.membership = membership
        self.server = server
    }

    /// Binds a wire server on a free loopback port and starts membership (joining `seeds`).
    public static func start(
        id: String, secret: [UInt8], seeds: [String], settings: SWIMSettings, incarnation: UInt64? = nil,
        logger: Logger = Logger(label: "flux.membership", factory: { _ in SwiftLogNoOpLogHandler() })
    ) async throws -> LoopbackMember {
        let box = Box()
        let server = try await WireServer.bind(
            host: "127.0.0.1", port: 0, localNodeID: id, secret: secret, logger: logger,
            peerHandler: { request, peer in
                if let m = box.membership.withLock({ $0 }) { await m.receive(request, from: peer) }
                return nil
            })
        var configuration = ClusterMembershipConfiguration(
            node: NodeID(id), wire: "127.0.0.1:\(server.port)", http: "127.0.0.1:0", secret: secret, seeds: seeds,
            settings: settings)
        if let incarnation { configuration.incarnation = incarnation }
        let membership = ClusterMembership(configuration: configuration, logger: logger)
        box.membership.withLock { $0 = membership }
        await membership.start()
        return LoopbackMember(membership: membership, server: server)
    }

    /// As a crash: the sockets close, nothing is announced.
    public func crash() async {
        guard
            closed.withLock({ c in
                defer { c = true }; return !c
            })
        else { return }
        await server.close()
        await membership.stop()
    }

    /// Graceful: announce `left`, then close.
    public func leaveAndStop() async {
        await membership.leave()
        await crash()
    }
}

/// Time from a member's crash to the moment every survivor holds it `dead`.
public struct DetectionFigures: Sendable, CustomStringConvertible {
    public var settings: SWIMSettings
    public var nodes: Int
    /// One value per run, in run order.
    public var detections: [Duration]

    public var median: Duration { detections.sorted()[detections.count / 2] }
    public var worst: Duration { detections.max() ?? .zero }

    public var description: String {
        let ms = { (d: Duration) in
            String(format: "%.0f ms", Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15)
        }
        return
            "\(nodes) nodes, probe \(settings.probeInterval), ping timeout \(settings.pingTimeout), "
            + "suspicion ×\(settings.suspicionMult)/×\(settings.suspicionMaxMult): kill → dead on every survivor "
            + "median \(ms(median)), worst \(ms(worst)) over \(detections.count) runs"
    }
}

/// Starts `nodes` members on loopback, waits until all see each other alive, crashes one (its
/// sockets close as with kill -9) and measures until every survivor holds it `dead`; `runs` times.
public func runDetectionBenchmark(
    nodes: Int = 3, settings: SWIMSettings = SWIMSettings(), runs: Int = 3, timeout: Duration = .seconds(120)
) async throws -> DetectionFigures {
    precondition(nodes >= 2 && runs >= 1)
    let secret = Array("detection-benchmark-secret".utf8)
    var detections: [Duration] = []
    for run in 0..<runs {
        var members: [LoopbackMember] = []
        let first = try await LoopbackMember.start(
            id: "bench-\(run)-0", secret: secret, seeds: [], settings: settings)
        members.append(first)
        for i in 1..<nodes {
            members.append(
                try await LoopbackMember.start(
                    id: "bench-\(run)-\(i)", secret: secret, seeds: [first.wire], settings: settings))
        }
        let survivors = Array(members.dropLast())
        let victim = members[members.count - 1]
        let measured: Result<Duration, DetectionBenchmarkError> = await {
            let converged =
                (try? await waitUntil(timeout) {
                    for m in members {
                        let alive = await m.membership.members().filter { $0.status == .alive }.count
                        if alive != nodes { return false }
                    }
                    return true
                }) ?? false
            guard converged else {
                return .failure(DetectionBenchmarkError("the cluster did not converge in \(timeout)"))
            }
            let start = ContinuousClock.now
            await victim.crash()
            let detected =
                (try? await waitUntil(timeout, poll: .milliseconds(10)) {
                    for m in survivors {
                        let status = await m.membership.member(victim.membership.myself)?.status
                        if status != .dead { return false }
                    }
                    return true
                }) ?? false
            guard detected else { return .failure(DetectionBenchmarkError("the crash was not detected in \(timeout)")) }
            return .success(ContinuousClock.now - start)
        }()
        for m in members { await m.crash() }
        detections.append(try measured.get())
    }
    return DetectionFigures(settings: settings, nodes: nodes, detections: detections)
}

public struct DetectionBenchmarkError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

private func waitUntil(
    _ timeout: Duration, poll: Duration = .milliseconds(20), _ condition: () async -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try await Task.sleep(for: poll)
    }
    return await condition()
}
