// libFuzzer target for the FluxWire decoder: the input is a byte stream of
// length-prefixed frames, as a peer could send it. Built by Fuzz/run-fuzz.sh
// together with the pure decoding sources of Sources/FluxWire.
//
// Invariants checked besides "never crash, never over-allocate" (ASan):
// - a decoded frame re-encodes and decodes to the same envelope;
// - a decoded message re-encodes to bytes that decode and re-encode identically.

private let codec = WireFrameCodec(limits: WireLimits(maxFrameSize: 64 * 1024, maxDecompressedSize: 256 * 1024))

@_cdecl("LLVMFuzzerTestOneInput")
public func fluxWireFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    // The length guard sees the stream in one chunk and in 3-byte chunks.
    var whole = WireLengthScanner()
    let wholeResult = Result { () throws(WireError) in try whole.scan(input, codec: codec) }
    var chunked = WireLengthScanner()
    var chunkedResult: Result<Void, WireError> = .success(())
    var offset = 0
    while offset < size, case .success = chunkedResult {
        let end = min(offset + 3, size)
        let chunk = UnsafeRawBufferPointer(rebasing: input[offset..<end])
        chunkedResult = Result { () throws(WireError) in try chunked.scan(chunk, codec: codec) }
        offset = end
    }
    switch (wholeResult, chunkedResult) {
    case (.success, .success), (.failure, .failure): break
    default: fatalError("length scanner depends on chunking")
    }

    var index = 0
    while size - index >= 4 {
        let length =
            UInt32(input[index]) << 24 | UInt32(input[index + 1]) << 16 | UInt32(input[index + 2]) << 8
            | UInt32(input[index + 3])
        index += 4
        do {
            try codec.checkLength(length)
        } catch {
            return 0
        }
        guard size - index >= Int(length) else { return 0 }
        let body = UnsafeRawBufferPointer(rebasing: input[index..<(index + Int(length))])
        index += Int(length)
        let envelope: WireEnvelope
        do {
            envelope = try codec.decode(body)
        } catch {
            continue
        }
        checkFrameRoundTrip(envelope)
        checkMessageRoundTrip(envelope)
    }
    return 0
}

private func checkFrameRoundTrip(_ envelope: WireEnvelope) {
    guard let bytes = try? codec.encode(envelope) else { return }  // may grow past the limit
    guard let again = try? codec.decode(bytes) else { fatalError("re-encoded frame does not decode") }
    guard again == envelope else { fatalError("frame round trip changed the envelope") }
}

private func checkMessageRoundTrip(_ envelope: WireEnvelope) {
    guard let message = try? WireMessageType.decodeAny(type: envelope.type, payload: envelope.payload) else { return }
    let first = message.encodedPayload()
    guard let again = try? WireMessageType.decodeAny(type: envelope.type, payload: first) else {
        fatalError("re-encoded message of type \(envelope.type) does not decode")
    }
    guard again.encodedPayload() == first else { fatalError("message round trip is not stable") }
}
