import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A child `flux-node` process for the demo and the benchmark: started with this executable,
/// its output to a log file, stopped with SIGTERM (or SIGKILL when asked).
final class ChildProcess: @unchecked Sendable {
    // @unchecked: `process` is created in init and only read afterwards; Foundation's Process is
    // thread-safe for terminate/waitUntilExit/processIdentifier.
    let name: String
    let process: Process
    let logURL: URL

    init(name: String, arguments: [String], logURL: URL, environment: [String: String] = [:]) throws {
        self.name = name
        self.logURL = logURL
        process = Process()
        process.executableURL = URL(fileURLWithPath: ChildProcess.selfExecutable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let handle = try FileHandle(forWritingTo: logURL)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    static var selfExecutable: String {
        let arg0 = CommandLine.arguments[0]
        if arg0.hasPrefix("/") { return arg0 }
        if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            return resolved
        }
        return FileManager.default.currentDirectoryPath + "/" + arg0
    }

    var isRunning: Bool { process.isRunning }
    var pid: Int32 { process.processIdentifier }

    func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(10)) async -> Int32? {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, signal)
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        return process.terminationStatus
    }

    /// The log's contents, for error reports.
    func logTail(lines: Int = 30) -> String {
        guard let data = FileManager.default.contents(atPath: logURL.path) else { return "" }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").suffix(lines).joined(separator: "\n")
    }
}

enum Ports {
    /// A TCP port on 127.0.0.1 that was free a moment ago.
    static func free() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        guard bound == 0 else { return 20000 + Int.random(in: 0..<20000) }
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

/// Waits until `url` answers 200.
func waitUntilReady(_ url: String, child: ChildProcess, timeout: Duration = .seconds(60)) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        guard child.isRunning else {
            throw DemoError("\(child.name) exited early:\n\(child.logTail())")
        }
        if let (status, _) = try? await SimpleHTTP.get(url, timeout: .seconds(1)), status == 200 { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw DemoError("\(child.name) did not become ready at \(url):\n\(child.logTail())")
}

struct DemoError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
