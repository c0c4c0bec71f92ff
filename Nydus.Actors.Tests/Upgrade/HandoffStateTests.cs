using System.Text;
using Nydus.Actors.Upgrade;
using Xunit;

namespace Nydus.Actors.Tests.Upgrade;

public class HandoffStateTests
{
    private static HandoffState Sample() => new(
        FuseConnId: (0UL << 20) | 57,
        FuseInit: new FuseInitState(7, 39, 0x1234_5678_9ABCUL, 1 << 20, 128 * 1024, 256, NoOpen: true, NoOpenDir: false),
        Mounts: [new HandoffMount("/mnt/rafs", "rafs", "/images/a.boot", "{\"device\":{}}", null, false)],
        Handles: [new HandoffHandle(3, 42, Directory: true, HostPath: null)],
        DaemonId: "d1");

    [Fact]
    public void Encode_then_decode_keeps_every_field()
    {
        var decoded = HandoffState.Decode(Sample().Encode());
        var expected = Sample();
        Assert.Equal(expected.FuseConnId, decoded.FuseConnId);
        Assert.Equal(expected.FuseInit, decoded.FuseInit);
        Assert.Equal(expected.Mounts, decoded.Mounts);
        Assert.Equal(expected.Handles, decoded.Handles);
        Assert.Equal("d1", decoded.DaemonId);
        Assert.StartsWith("NYDUS-HANDOFF v1 sha256:", Encoding.ASCII.GetString(Sample().Encode()));
    }

    [Fact]
    public void A_flipped_body_byte_is_a_checksum_mismatch()
    {
        var bytes = Sample().Encode();
        bytes[^5] ^= 0x20;
        var error = Assert.Throws<UpgradeException>(() => HandoffState.Decode(bytes));
        Assert.Equal(UpgradeErrorKind.CorruptState, error.Kind);
        Assert.Contains("checksum mismatch", error.Message);
    }

    [Fact]
    public void Truncated_state_is_rejected()
    {
        var bytes = Sample().Encode();
        var error = Assert.Throws<UpgradeException>(() => HandoffState.Decode(bytes.AsSpan(0, bytes.Length - 10)));
        Assert.Contains("checksum mismatch", error.Message);
        error = Assert.Throws<UpgradeException>(() => HandoffState.Decode(bytes.AsSpan(0, 10)));
        Assert.Contains("header line", error.Message);
        error = Assert.Throws<UpgradeException>(() => HandoffState.Decode([]));
        Assert.Equal(UpgradeErrorKind.CorruptState, error.Kind);
    }

    [Fact]
    public void Unknown_version_and_foreign_bytes_are_named()
    {
        var text = Encoding.ASCII.GetString(Sample().Encode()).Replace("NYDUS-HANDOFF v1", "NYDUS-HANDOFF v9");
        var error = Assert.Throws<UpgradeException>(() => HandoffState.Decode(Encoding.ASCII.GetBytes(text)));
        Assert.Contains("version 'v9'", error.Message);

        // Upstream's binary state (u64 magic first) is not ours.
        byte[] upstream = [0x01, 0x00, 0x64, 0x86, 0x84, 0x19, 0x10, 0x07, 0x01, 0x00, (byte)'\n'];
        error = Assert.Throws<UpgradeException>(() => HandoffState.Decode(upstream));
        Assert.Contains("header", error.Message);
    }

    [Fact]
    public void Valid_checksum_over_invalid_json_is_rejected()
    {
        byte[] body = "{not json"u8.ToArray();
        string header = $"NYDUS-HANDOFF v1 sha256:{Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(body))}\n";
        var error = Assert.Throws<UpgradeException>(() => HandoffState.Decode([.. Encoding.ASCII.GetBytes(header), .. body]));
        Assert.Contains("JSON is invalid", error.Message);
    }
}
