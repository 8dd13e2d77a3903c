import Testing

@testable import FluxNode

/// The server malloc settings apply unless the operator tuned malloc through the environment.
@Suite struct MemoryTuningTests {
    @Test func appliesByDefault() {
        #expect(MemoryTuning.shouldApply(environment: [:]))
        #expect(MemoryTuning.shouldApply(environment: ["LOG_LEVEL": "debug", "GLIBC_TUNABLES": "glibc.rtld.nns=2"]))
    }

    @Test func theOperatorsMallocSettingsStand() {
        #expect(!MemoryTuning.shouldApply(environment: ["GLIBC_TUNABLES": "glibc.malloc.arena_max=2"]))
        #expect(!MemoryTuning.shouldApply(environment: ["MALLOC_ARENA_MAX": "2"]))
    }
}
