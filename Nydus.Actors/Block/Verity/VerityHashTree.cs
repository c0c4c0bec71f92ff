using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Nydus.Actors.Block.Verity;

/// <summary>
/// What <c>veritysetup format</c> is asked for: hash format version 1, sha256, 4096-byte data and hash blocks.
/// </summary>
/// <param name="Salt">Prepended to every hashed block (format 1); empty for none (upstream's <c>-s ""</c>).</param>
/// <param name="Uuid">The superblock's UUID (16 bytes, as <c>--uuid</c> prints it).</param>
/// <param name="WithSuperblock">
/// veritysetup's default: a 512-byte superblock in the first hash block, the tree after it. Without it
/// (<c>--no-superblock</c>, upstream's export) the tree starts at the hash offset.
/// </param>
public sealed record VerityParameters(byte[] Salt, Guid Uuid, bool WithSuperblock)
{
    public const int BlockSize = 4096;
    public const int DigestSize = 32;
    public const int HashesPerBlock = BlockSize / DigestSize;

    /// <summary>veritysetup's defaults: a fresh random 32-byte salt and UUID, with a superblock.</summary>
    public static VerityParameters Random() => new(RandomNumberGenerator.GetBytes(32), Guid.NewGuid(), true);
}

/// <summary>
/// Builds a dm-verity hash tree over data blocks fed in order, byte-identical to what cryptsetup's
/// <c>veritysetup format</c> writes (lib/verity/verity_hash.c, verity.c): level 0 holds SHA-256(salt ‖ block) of
/// every data block, each next level the hashes of the previous level's hash blocks, blocks zero-padded; the levels
/// are stored top first; the root hash is the hash of the single top block (of the only data block when there is
/// one). The level-0 digests stay in memory: 32 bytes per 4 KiB data block.
/// </summary>
public sealed class VerityHashTree
{
    private readonly VerityParameters _parameters;
    private readonly long _dataBlocks;
    private readonly byte[] _level0;

    // One hasher, reset after each block: the tree is fed from one thread at a time.
    private readonly IncrementalHash _hasher = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private long _added;

    public VerityHashTree(VerityParameters parameters, long dataBlocks)
    {
        if (dataBlocks <= 0) throw new ArgumentOutOfRangeException(nameof(dataBlocks), "a verity device needs at least one data block");
        if (parameters.Salt.Length > 256) throw new ArgumentException("a verity salt is at most 256 bytes", nameof(parameters));
        _parameters = parameters;
        _dataBlocks = dataBlocks;
        long level0Blocks = (dataBlocks + VerityParameters.HashesPerBlock - 1) / VerityParameters.HashesPerBlock;
        _level0 = new byte[checked(level0Blocks * VerityParameters.BlockSize)];
    }

    /// <summary>Hash of one data block; blocks must come in order, each exactly 4096 bytes.</summary>
    public void Add(ReadOnlySpan<byte> block)
    {
        if (block.Length != VerityParameters.BlockSize) throw new ArgumentException("verity data blocks are 4096 bytes", nameof(block));
        if (_added >= _dataBlocks) throw new InvalidOperationException($"more than the {_dataBlocks} data blocks declared");
        Hash(block, _level0.AsSpan((int)(_added * VerityParameters.DigestSize), VerityParameters.DigestSize));
        _added++;
    }

    /// <summary>Adds <paramref name="count"/> blocks of zeros (holes) without reading them.</summary>
    public void AddZeroBlocks(long count)
    {
        if (count <= 0) return;
        Span<byte> digest = stackalloc byte[VerityParameters.DigestSize];
        Hash(new byte[VerityParameters.BlockSize], digest);
        for (long i = 0; i < count; i++)
        {
            if (_added >= _dataBlocks) throw new InvalidOperationException($"more than the {_dataBlocks} data blocks declared");
            digest.CopyTo(_level0.AsSpan((int)(_added * VerityParameters.DigestSize)));
            _added++;
        }
    }

    /// <summary>
    /// The hash area as veritysetup lays it out from the hash offset (superblock block first when asked for) and
    /// the root hash. Every data block must have been added.
    /// </summary>
    public (byte[] HashArea, byte[] RootHash) Finish()
    {
        if (_added != _dataBlocks) throw new InvalidOperationException($"{_added} of {_dataBlocks} data blocks were added");
        int levels = LevelCount(_dataBlocks);
        var stored = new List<byte[]>(levels);
        byte[] current = _level0;
        byte[] root = new byte[VerityParameters.DigestSize];
        if (levels == 0)
        {
            // One data block: its own hash is the root, and there is no tree.
            _level0.AsSpan(0, VerityParameters.DigestSize).CopyTo(root);
        }

        for (int level = 0; level < levels; level++)
        {
            stored.Add(current);
            long blocks = current.Length / VerityParameters.BlockSize;
            if (level == levels - 1)
            {
                Hash(current.AsSpan(0, VerityParameters.BlockSize), root);
                break;
            }

            long nextBlocks = (blocks + VerityParameters.HashesPerBlock - 1) / VerityParameters.HashesPerBlock;
            var next = new byte[nextBlocks * VerityParameters.BlockSize];
            for (long b = 0; b < blocks; b++)
            {
                Hash(current.AsSpan((int)(b * VerityParameters.BlockSize), VerityParameters.BlockSize),
                    next.AsSpan((int)(b * VerityParameters.DigestSize), VerityParameters.DigestSize));
            }

            current = next;
        }

        int header = _parameters.WithSuperblock ? VerityParameters.BlockSize : 0;
        var area = new byte[header + stored.Sum(l => (long)l.Length)];
        if (_parameters.WithSuperblock) WriteSuperblock(area);
        int at = header;
        for (int level = stored.Count - 1; level >= 0; level--)
        {
            stored[level].CopyTo(area, at);
            at += stored[level].Length;
        }

        return (area, root);
    }

    /// <summary>cryptsetup's level count: the smallest n with (data_blocks − 1) >> (7·n) == 0.</summary>
    public static int LevelCount(long dataBlocks)
    {
        int levels = 0;
        while (7 * levels < 64 && ((ulong)(dataBlocks - 1) >> (7 * levels)) != 0) levels++;
        return levels;
    }

    /// <summary>struct verity_sb (lib/verity/verity.c), 512 bytes, little endian.</summary>
    private void WriteSuperblock(Span<byte> area)
    {
        "verity\0\0"u8.CopyTo(area);
        BinaryPrimitives.WriteUInt32LittleEndian(area.Slice(8), 1);   // superblock version
        BinaryPrimitives.WriteUInt32LittleEndian(area.Slice(12), 1);  // hash type: format 1
        _parameters.Uuid.TryWriteBytes(area.Slice(16, 16), bigEndian: true, out _);
        Encoding.ASCII.GetBytes("sha256").CopyTo(area.Slice(32));
        BinaryPrimitives.WriteUInt32LittleEndian(area.Slice(64), VerityParameters.BlockSize);
        BinaryPrimitives.WriteUInt32LittleEndian(area.Slice(68), VerityParameters.BlockSize);
        BinaryPrimitives.WriteUInt64LittleEndian(area.Slice(72), (ulong)_dataBlocks);
        BinaryPrimitives.WriteUInt16LittleEndian(area.Slice(80), (ushort)_parameters.Salt.Length);
        _parameters.Salt.CopyTo(area.Slice(88));
    }

    private void Hash(ReadOnlySpan<byte> block, Span<byte> digest)
    {
        _hasher.AppendData(_parameters.Salt);
        _hasher.AppendData(block);
        _hasher.GetHashAndReset(digest);
    }
}
