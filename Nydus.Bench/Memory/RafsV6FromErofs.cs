using System.Buffers.Binary;
using System.Security.Cryptography;
using Nydus.Actors.Rafs;
using Nydus.Actors.Rafs.Metadata;

namespace Nydus.Bench.Memory;

/// <summary>
/// Makes a RAFS v6 bootstrap plus its data blob out of a chunk-based `mkfs.erofs --chunksize=1048576 --blobdev=B`
/// image, for benchmarks on a machine without nydus-image. The EROFS metadata stays as mkfs.erofs wrote it, moved
/// one block up (block 0 is RAFS v6's); what RAFS v6 adds is patched in: the RAFS_V6 compat bit (checksum 0), the
/// extended superblock at 1152 (where the one-entry device table was), a one-blob table and an 80-byte chunk-table record per chunk, both appended, and
/// every chunk index rewritten to name (blob 0, chunk n) instead of (device 1, block). The blob is the raw device
/// file, uncompressed, renamed to its SHA-256 (the localfs backend looks blobs up by id). Digests are left zero:
/// mounts of it must not turn on digest validation.
/// </summary>
public static class RafsV6FromErofs
{
    public const int ChunkSize = 1 << 20;
    private const int BlockSize = 4096;
    private const int ExtOffset = 1152;
    private const int ChunkRecordSize = 80;
    private const int BlobEntrySize = 256;
    private const uint CompatSbChecksum = 0x1;
    private const uint CompatRafsV6 = 0x4000_0000;
    private const ulong FlagsNoneSha256ExplicitIdsXattrs = 0x1 | 0x8 | 0x10 | 0x20;

    /// <summary>Builds <paramref name="bootstrap"/> and the blob (in <paramref name="blobDir"/>) from <paramref name="source"/>.</summary>
    public static void Build(string source, string bootstrap, string blobDir, Action<string, string[]> run)
    {
        string raw = bootstrap + ".blobdev";
        run("mkfs.erofs", ["--quiet", $"--chunksize={ChunkSize}", "--blobdev=" + raw, bootstrap, source]);
        byte[] plainImage = File.ReadAllBytes(bootstrap);

        // Every inode, found through the reader on the plain image (mkfs.erofs's own layout).
        var inodes = new List<(ulong Nid, InodeType Type, ulong Size)>();
        using (RafsImage plain = RafsImage.Open(bootstrap, BlobSource.FromDevices(raw)))
        {
            inodes.Add((plain.RootInode, InodeType.Directory, plain.GetAttr(plain.RootInode).Size));
            CollectInodes(plain, plain.RootInode, inodes, new HashSet<ulong>());
        }

        // mkfs.erofs may start the metadata in block 0 (meta_blkaddr 0), where RAFS v6 keeps its extended
        // superblock: move everything one block up. Nids are relative to meta_blkaddr and stay; block addresses
        // of flat data (directories, symlinks, inline files) move with it.
        byte[] image = new byte[plainImage.Length + BlockSize];
        plainImage.AsSpan(0, 1024 + 128).CopyTo(image);
        plainImage.CopyTo(image, BlockSize);
        Span<byte> sb = image.AsSpan(1024, 128);
        uint metaBlock = BinaryPrimitives.ReadUInt32LittleEndian(sb.Slice(40)) + 1;
        BinaryPrimitives.WriteUInt32LittleEndian(sb.Slice(40), metaBlock);
        uint xattrBlock = BinaryPrimitives.ReadUInt32LittleEndian(sb.Slice(44));
        if (xattrBlock != 0) BinaryPrimitives.WriteUInt32LittleEndian(sb.Slice(44), xattrBlock + 1);

        var chunks = new List<byte[]>();
        foreach ((ulong nid, InodeType type, ulong size) in inodes.OrderBy(i => i.Nid))
        {
            long inode = (long)metaBlock * BlockSize + (long)nid * 32;
            ushort format = BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan((int)inode));
            int layout = (format >> 1) & 7;
            if (layout is 0 or 2)
            {
                if (type is InodeType.Directory or InodeType.Regular or InodeType.Symlink)
                {
                    Span<byte> u = image.AsSpan((int)inode + 16, 4);
                    BinaryPrimitives.WriteUInt32LittleEndian(u, BinaryPrimitives.ReadUInt32LittleEndian(u) + 1);
                }

                continue;
            }

            if (layout != 4 || type != InodeType.Regular)
            {
                throw new InvalidOperationException($"nid {nid}: layout {layout} for {type} is not what mkfs.erofs --chunksize writes");
            }

            bool extended = (format & 1) != 0;
            ushort xattrCount = BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan((int)inode + 2));
            int xattrSize = xattrCount == 0 ? 0 : 12 + 4 * (xattrCount - 1);
            long table = (inode + (extended ? 64 : 32) + xattrSize + 7) / 8 * 8;
            long count = ((long)size + ChunkSize - 1) / ChunkSize;
            for (long k = 0; k < count; k++)
            {
                Span<byte> index = image.AsSpan((int)(table + k * 8), 8);
                uint blockAddress = BinaryPrimitives.ReadUInt32LittleEndian(index.Slice(4));
                int chunk = chunks.Count;
                int length = (int)Math.Min(ChunkSize, (long)size - k * ChunkSize);
                var record = new byte[ChunkRecordSize];
                BinaryPrimitives.WriteUInt32LittleEndian(record.AsSpan(40), (uint)length); // compressed size
                BinaryPrimitives.WriteUInt32LittleEndian(record.AsSpan(44), (uint)length); // uncompressed size
                BinaryPrimitives.WriteUInt64LittleEndian(record.AsSpan(48), (ulong)blockAddress * BlockSize);
                BinaryPrimitives.WriteUInt64LittleEndian(record.AsSpan(56), (ulong)blockAddress * BlockSize);
                BinaryPrimitives.WriteUInt64LittleEndian(record.AsSpan(64), (ulong)(k * ChunkSize));
                BinaryPrimitives.WriteUInt32LittleEndian(record.AsSpan(72), (uint)chunk);
                chunks.Add(record);
                // RAFS v6 chunk address: advise = chunk index low 16 bits; device_id = blob index + 1, high bits above.
                BinaryPrimitives.WriteUInt16LittleEndian(index, (ushort)chunk);
                BinaryPrimitives.WriteUInt16LittleEndian(index.Slice(2), (ushort)(1 | ((chunk >> 16) << 8)));
            }
        }

        // Hashed as a stream: the blob may be larger than the bench wants in its heap (the rafs bench's is 1.1 GB).
        long blobLength = new FileInfo(raw).Length;
        string blobId;
        using (FileStream blob = File.OpenRead(raw)) blobId = Convert.ToHexString(SHA256.HashData(blob)).ToLowerInvariant();
        File.Move(raw, Path.Combine(blobDir, blobId), overwrite: true);

        long blobTable = (image.Length + 7) / 8 * 8;
        long chunkTable = blobTable + BlobEntrySize;
        var output = new byte[chunkTable + (long)chunks.Count * ChunkRecordSize];
        image.CopyTo(output, 0);

        sb = output.AsSpan(1024, 128);
        uint compat = BinaryPrimitives.ReadUInt32LittleEndian(sb.Slice(8));
        BinaryPrimitives.WriteUInt32LittleEndian(sb.Slice(4), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(sb.Slice(8), (compat & ~CompatSbChecksum) | CompatRafsV6);

        Span<byte> ext = output.AsSpan(ExtOffset, 256);
        ext.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(ext, FlagsNoneSha256ExplicitIdsXattrs);
        BinaryPrimitives.WriteUInt64LittleEndian(ext.Slice(8), (ulong)blobTable);
        BinaryPrimitives.WriteUInt32LittleEndian(ext.Slice(16), BlobEntrySize);
        BinaryPrimitives.WriteUInt32LittleEndian(ext.Slice(20), ChunkSize);
        BinaryPrimitives.WriteUInt64LittleEndian(ext.Slice(24), (ulong)chunkTable);
        BinaryPrimitives.WriteUInt64LittleEndian(ext.Slice(32), (ulong)chunks.Count * ChunkRecordSize);

        Span<byte> entry = output.AsSpan((int)blobTable, BlobEntrySize);
        System.Text.Encoding.ASCII.GetBytes(blobId, entry);
        BinaryPrimitives.WriteUInt32LittleEndian(entry.Slice(64), 0); // blob index
        BinaryPrimitives.WriteUInt32LittleEndian(entry.Slice(68), ChunkSize);
        BinaryPrimitives.WriteUInt32LittleEndian(entry.Slice(72), (uint)chunks.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(entry.Slice(76), 0); // compression: none
        BinaryPrimitives.WriteUInt32LittleEndian(entry.Slice(80), 1); // digest: sha256
        BinaryPrimitives.WriteUInt64LittleEndian(entry.Slice(88), (ulong)blobLength);

        for (int i = 0; i < chunks.Count; i++)
        {
            chunks[i].CopyTo(output, chunkTable + (long)i * ChunkRecordSize);
        }

        File.WriteAllBytes(bootstrap, output);

        // The result must read back as the source tree (a bench of a broken image would measure nothing).
        using RafsImage check = RafsImage.Open(bootstrap, BlobSource.FromDirectory(blobDir));
        if (check.Format != RafsFormat.RafsV6) throw new InvalidOperationException($"{bootstrap} opens as {check.Format}");
    }

    private static void CollectInodes(RafsImage image, ulong dir, List<(ulong, InodeType, ulong)> inodes, HashSet<ulong> seen)
    {
        var sink = new Collector();
        image.ReadDir(dir, 0, ref sink);
        foreach ((string name, ulong ino, InodeType type) in sink.Entries)
        {
            if (name is "." or ".." || !seen.Add(ino)) continue;
            inodes.Add((ino, type, image.GetAttr(ino).Size));
            if (type == InodeType.Directory)
            {
                CollectInodes(image, ino, inodes, seen);
            }
        }
    }

    private struct Collector() : IDirEntrySink
    {
        public List<(string, ulong, InodeType)> Entries { get; } = new();

        public bool TryAdd(scoped ReadOnlySpan<byte> name, ulong ino, InodeType type, long nextOffset)
        {
            Entries.Add((System.Text.Encoding.UTF8.GetString(name), ino, type));
            return true;
        }
    }
}
