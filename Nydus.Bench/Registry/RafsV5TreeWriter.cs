using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Nydus.Bench.Registry;

/// <summary>
/// Writes a generated tree straight as a RAFS v5 image (bootstrap + one data blob), because no nydus-image builder
/// is available here: <c>dirs</c> directories of <c>filesPerDir</c> files each, random contents of 1 to
/// <c>maxFileSize</c> bytes, stored raw (uncompressed, SHA-256 chunk digests) and packed back to back in the blob in
/// tree order, as upstream's builder packs them. Layout per shared/spec/rafs.md §1: superblock, inode table,
/// (empty) prefetch table, blob table, extended blob table, then the inode records, children of each directory at
/// consecutive indexes, sorted by name.
/// </summary>
public static class RafsV5TreeWriter
{
    private const int SuperBlockSize = 8192;
    private const int InodeSize = 128;
    private const int ChunkRecordSize = 80;
    private const uint ChunkSize = 1 << 20;

    public sealed record Image(string BootstrapPath, string BlobPath, string BlobId, int Files, long FileBytes, long BlobSize);

    public static Image Write(string directory, int dirs, int filesPerDir, int maxFileSize, int seed = 42)
    {
        var random = new Random(seed);
        string blobPath = Path.Combine(directory, "blob.tmp");
        var fileSizes = new int[dirs, filesPerDir];
        var fileOffsets = new long[dirs, filesPerDir];
        long blobSize = 0;
        using (var blob = new FileStream(blobPath, FileMode.Create, FileAccess.Write))
        {
            var buffer = new byte[maxFileSize];
            for (int d = 0; d < dirs; d++)
            for (int f = 0; f < filesPerDir; f++)
            {
                int size = random.Next(1, maxFileSize + 1);
                random.NextBytes(buffer.AsSpan(0, size));
                fileSizes[d, f] = size;
                fileOffsets[d, f] = blobSize;
                blob.Write(buffer, 0, size);
                blobSize += size;
            }
        }

        string blobId = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(blobPath)));
        string finalBlob = Path.Combine(directory, blobId);
        File.Move(blobPath, finalBlob, overwrite: true);

        // Inode indexes: 1 = root, 2..dirs+1 = directories, then the files of each directory in turn.
        int inodeCount = 1 + dirs + dirs * filesPerDir;
        int inodeTableBytes = Align8(inodeCount * 4);
        long inodeTableOffset = SuperBlockSize;
        long blobTableOffset = inodeTableOffset + inodeTableBytes;
        int blobTableSize = Align8(8 + blobId.Length);
        long extTableOffset = blobTableOffset + blobTableSize;
        long recordsStart = extTableOffset + 64;

        var records = new MemoryStream();
        var slots = new uint[inodeCount];
        string DirName(int d) => $"d{d:D3}";
        string FileName(int f) => $"f{f:D4}.bin";
        long DirSize(IEnumerable<string> names) => Math.Max(4096, (names.Sum(n => n.Length + 8) + 4095) / 4096 * 4096);

        void Add(ulong index, ulong parent, uint mode, ulong size, uint nlink, uint childIndex, uint childCount, string name,
            ReadOnlySpan<byte> chunks)
        {
            slots[index - 1] = (uint)((recordsStart + records.Length) >> 3);
            byte[] nameBytes = Encoding.UTF8.GetBytes(name);
            var record = new byte[InodeSize + Align8(nameBytes.Length)];
            Span<byte> r = record;
            BinaryPrimitives.WriteUInt64LittleEndian(r[32..], parent);
            BinaryPrimitives.WriteUInt64LittleEndian(r[40..], index);
            BinaryPrimitives.WriteUInt32LittleEndian(r[60..], mode);
            BinaryPrimitives.WriteUInt64LittleEndian(r[64..], size);
            BinaryPrimitives.WriteUInt64LittleEndian(r[72..], (size + 511) / 512);
            BinaryPrimitives.WriteUInt32LittleEndian(r[88..], nlink);
            BinaryPrimitives.WriteUInt32LittleEndian(r[92..], childIndex);
            BinaryPrimitives.WriteUInt32LittleEndian(r[96..], childCount);
            BinaryPrimitives.WriteUInt16LittleEndian(r[100..], (ushort)nameBytes.Length);
            BinaryPrimitives.WriteUInt64LittleEndian(r[112..], 1_700_000_000);
            nameBytes.CopyTo(r[InodeSize..]);
            records.Write(record);
            records.Write(chunks);
        }

        var dirNames = Enumerable.Range(0, dirs).Select(DirName).ToArray();
        Add(1, 0, 0x41ED, (ulong)DirSize(dirNames), (uint)(2 + dirs), 2, (uint)dirs, "/", default);
        var fileNames = Enumerable.Range(0, filesPerDir).Select(FileName).ToArray();
        for (int d = 0; d < dirs; d++)
        {
            uint firstChild = (uint)(2 + dirs + d * filesPerDir);
            Add((ulong)(2 + d), 1, 0x41ED, (ulong)DirSize(fileNames), 2, firstChild, (uint)filesPerDir, dirNames[d], default);
        }

        using var blobFile = File.OpenHandle(finalBlob);
        var data = new byte[maxFileSize];
        uint chunkIndex = 0;
        for (int d = 0; d < dirs; d++)
        for (int f = 0; f < filesPerDir; f++)
        {
            // Files are below 1 MiB: one chunk each.
            int size = fileSizes[d, f];
            long offset = fileOffsets[d, f];
            RandomAccess.Read(blobFile, data.AsSpan(0, size), offset);
            var chunk = new byte[ChunkRecordSize];
            Span<byte> c = chunk;
            SHA256.HashData(data.AsSpan(0, size), c[..32]);
            BinaryPrimitives.WriteUInt32LittleEndian(c[40..], (uint)size);
            BinaryPrimitives.WriteUInt32LittleEndian(c[44..], (uint)size);
            BinaryPrimitives.WriteUInt64LittleEndian(c[48..], (ulong)offset);
            BinaryPrimitives.WriteUInt64LittleEndian(c[56..], (ulong)offset);
            BinaryPrimitives.WriteUInt32LittleEndian(c[72..], chunkIndex++);
            Add((ulong)(2 + dirs + d * filesPerDir + f), (ulong)(2 + d), 0x81A4, (ulong)size, 1, 0, 1, fileNames[f], chunk);
        }

        var boot = new byte[recordsStart + records.Length];
        Span<byte> sb = boot;
        BinaryPrimitives.WriteUInt32LittleEndian(sb, 0x52414653);
        BinaryPrimitives.WriteUInt32LittleEndian(sb[4..], 0x500);
        BinaryPrimitives.WriteUInt32LittleEndian(sb[8..], SuperBlockSize);
        BinaryPrimitives.WriteUInt32LittleEndian(sb[12..], ChunkSize);
        BinaryPrimitives.WriteUInt64LittleEndian(sb[16..], 0x1 | 0x8); // COMPRESSION_NONE | HASH_SHA256
        BinaryPrimitives.WriteUInt64LittleEndian(sb[24..], (ulong)inodeCount);
        BinaryPrimitives.WriteUInt64LittleEndian(sb[32..], (ulong)inodeTableOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(sb[40..], (ulong)blobTableOffset); // empty prefetch table
        BinaryPrimitives.WriteUInt64LittleEndian(sb[48..], (ulong)blobTableOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(sb[56..], (uint)inodeCount);
        BinaryPrimitives.WriteUInt32LittleEndian(sb[64..], (uint)blobTableSize);
        BinaryPrimitives.WriteUInt32LittleEndian(sb[68..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(sb[72..], (ulong)extTableOffset);
        for (int i = 0; i < inodeCount; i++) BinaryPrimitives.WriteUInt32LittleEndian(sb[(int)(inodeTableOffset + i * 4)..], slots[i]);
        Encoding.ASCII.GetBytes(blobId).CopyTo(sb[(int)(blobTableOffset + 8)..]);
        BinaryPrimitives.WriteUInt32LittleEndian(sb[(int)extTableOffset..], chunkIndex);
        BinaryPrimitives.WriteUInt64LittleEndian(sb[(int)(extTableOffset + 8)..], (ulong)blobSize);
        BinaryPrimitives.WriteUInt64LittleEndian(sb[(int)(extTableOffset + 16)..], (ulong)blobSize);
        records.ToArray().CopyTo(sb[(int)recordsStart..]);
        string bootstrap = Path.Combine(directory, "image.boot");
        File.WriteAllBytes(bootstrap, boot);

        long fileBytes = 0;
        foreach (int size in fileSizes) fileBytes += size;
        return new Image(bootstrap, finalBlob, blobId, dirs * filesPerDir, fileBytes, blobSize);
    }

    private static int Align8(int value) => (value + 7) & ~7;
}
