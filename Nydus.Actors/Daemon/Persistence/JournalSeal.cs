using System.Runtime.Serialization;
using System.Security.Cryptography;

namespace Nydus.Actors.Daemon.Persistence;

/// <summary>
/// Seals journal records that carry mount configs (registry auth, tokens, object store keys) with AES-256-GCM under
/// the work dir's key file (<see cref="JournalFiles.KeyPath"/>, mode 0600), so that the journal, its snapshots and
/// any copy of them (a backup, a PostgreSQL journal shared by a fleet, a bug report) hold no secret in plain text,
/// while a restart or a successor on the same work dir still mounts every instance again with its credentials.
/// Layout: 12-byte nonce, 16-byte tag, ciphertext; the record's manifest is the associated data, so a sealed record
/// cannot be passed off as another kind.
/// </summary>
public sealed class JournalSeal
{
    public const int KeySize = 32;
    private const int NonceSize = 12;
    private const int TagSize = 16;

    private readonly byte[] _key;

    public JournalSeal(byte[] key, string keyPath)
    {
        if (key.Length != KeySize) throw new ArgumentException($"a journal key has {KeySize} bytes", nameof(key));
        _key = key;
        KeyPath = keyPath;
    }

    /// <summary>Where the key came from, for error messages.</summary>
    public string KeyPath { get; }

    public byte[] Seal(byte[] plain, string manifest)
    {
        var sealedBytes = new byte[NonceSize + TagSize + plain.Length];
        var nonce = sealedBytes.AsSpan(0, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(_key, TagSize);
        aes.Encrypt(nonce, plain, sealedBytes.AsSpan(NonceSize + TagSize), sealedBytes.AsSpan(NonceSize, TagSize),
            System.Text.Encoding.UTF8.GetBytes(manifest));
        return sealedBytes;
    }

    public byte[] Open(byte[] sealedBytes, string manifest)
    {
        if (sealedBytes.Length < NonceSize + TagSize)
            throw new SerializationException($"sealed {manifest} record is {sealedBytes.Length} bytes, too short to be one");
        var plain = new byte[sealedBytes.Length - NonceSize - TagSize];
        try
        {
            using var aes = new AesGcm(_key, TagSize);
            aes.Decrypt(sealedBytes.AsSpan(0, NonceSize), sealedBytes.AsSpan(NonceSize + TagSize), sealedBytes.AsSpan(NonceSize, TagSize),
                plain, System.Text.Encoding.UTF8.GetBytes(manifest));
        }
        catch (AuthenticationTagMismatchException)
        {
            throw new SerializationException(
                $"a sealed {manifest} record does not open with the key {KeyPath}: the record is damaged or the key is not the one it was sealed with");
        }
        return plain;
    }
}
