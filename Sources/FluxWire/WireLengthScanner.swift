/// Follows the length prefixes of a byte stream chunk by chunk and checks each
/// one as soon as its 4 bytes have arrived — before the frame it announces is
/// buffered. `LengthFieldBasedFrameDecoder` has no maximum of its own, so this
/// is what keeps a peer from making us hold gigabytes.
struct WireLengthScanner: Sendable {
    private var headerBytes = 0
    private var partial: UInt32 = 0
    private var bodyRemaining = 0

    mutating func scan(_ bytes: UnsafeRawBufferPointer, codec: WireFrameCodec) throws(WireError) {
        var i = 0
        let count = bytes.count
        while i < count {
            if bodyRemaining > 0 {
                let n = min(bodyRemaining, count - i)
                i += n
                bodyRemaining -= n
                continue
            }
            partial = partial << 8 | UInt32(bytes[i])
            headerBytes += 1
            i += 1
            if headerBytes == 4 {
                try codec.checkLength(partial)
                bodyRemaining = Int(partial)
                headerBytes = 0
                partial = 0
            }
        }
    }
}
