import Foundation

/// A dedicated thread that owns one PostgreSQL connection and runs jobs on it one at a time.
/// libpq blocks; it blocks this thread only, never Swift's cooperative pool or a NIO event loop.
///
/// The connection is opened on first use and again after it is lost (server restart,
/// `pg_terminate_backend`, network): the job that finds it lost fails with `.unavailable`
/// (the write-behind journal retries), and the next job connects afresh.
final class PostgresWorker: @unchecked Sendable {
    // @unchecked Sendable: `jobs` and `state` are only touched with `condition` locked;
    // `connection` only on `thread` (inside `loop`), never anywhere else.
    typealias Job = @Sendable (Result<PostgresConnection, JournalError>) -> Void

    private enum Entry {
        case job(Job)
        /// Queued by `shutdown`: runs after every job queued before it.
        case stopped(@Sendable () -> Void)
    }

    private enum State { case running, stopping, stopped }

    private let condition = NSCondition()
    private var jobs: [Entry] = []
    private var jobHead = 0
    private var state = State.running
    private var connection: PostgresConnection?
    private let conninfo: String
    /// Runs once on every new connection (session settings such as `search_path`).
    private let setUp: @Sendable (PostgresConnection) throws(JournalError) -> Void

    init(
        name: String, conninfo: String,
        setUp: @escaping @Sendable (PostgresConnection) throws(JournalError) -> Void
    ) {
        self.conninfo = conninfo
        self.setUp = setUp
        let thread = Thread { [self] in self.loop() }
        thread.name = name
        thread.start()
    }

    /// Runs `body` on the worker's connection, connecting first when needed.
    func run<T: Sendable>(
        _ body: @escaping @Sendable (PostgresConnection) throws(JournalError) -> T
    ) async throws(JournalError) -> T {
        let result: Result<T, JournalError> = await withCheckedContinuation { continuation in
            let accepted = enqueue { connection in
                do throws(JournalError) {
                    continuation.resume(returning: .success(try body(try connection.get())))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            if !accepted { continuation.resume(returning: .failure(.unavailable("journal store is closed"))) }
        }
        return try result.get()
    }

    /// Stops taking jobs, finishes the queued ones, closes the connection and ends the thread.
    func shutdown() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            switch state {
            case .running:
                state = .stopping
                jobs.append(.stopped { continuation.resume() })
                condition.signal()
            case .stopping:
                jobs.append(.stopped { continuation.resume() })
            case .stopped:
                continuation.resume()
            }
            condition.unlock()
        }
    }

    /// Like `shutdown`, without waiting (for `deinit` of an owner that was never closed).
    func stopSoon() {
        condition.lock()
        if state == .running {
            state = .stopping
            condition.signal()
        }
        condition.unlock()
    }

    private func enqueue(_ job: @escaping Job) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard state == .running else { return false }
        jobs.append(.job(job))
        condition.signal()
        return true
    }

    private func loop() {
        while true {
            condition.lock()
            while jobHead == jobs.count && state == .running { condition.wait() }
            if jobHead == jobs.count {
                // Stopping and nothing left.
                state = .stopped
                condition.unlock()
                connection?.close()
                connection = nil
                return
            }
            let entry = jobs[jobHead]
            jobHead += 1
            if jobHead == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                jobHead = 0
            }
            condition.unlock()
            switch entry {
            case .job(let job): runJob(job)
            case .stopped(let resume): resume()
            }
        }
    }

    private func runJob(_ job: Job) {
        if connection?.isUsable != true {
            connection?.close()
            connection = nil
            do throws(JournalError) {
                let fresh = try PostgresConnection(conninfo: conninfo)
                try setUp(fresh)
                connection = fresh
            } catch {
                job(.failure(error))
                return
            }
        }
        job(.success(connection!))
        if connection?.isUsable != true {
            connection?.close()
            connection = nil
        }
    }
}
