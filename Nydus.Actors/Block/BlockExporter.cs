using Nydus.Actors.Block.Verity;

namespace Nydus.Actors.Block;

/// <summary>What an export wrote: the raw device, then (with verity) the hash area from <see cref="HashOffset"/>.</summary>
public sealed record BlockExportResult(string Path, long DataBlocks, long HashOffset, byte[]? RootHash, VerityParameters? Verity)
{
    public long DataBytes => DataBlocks * BlockAddressSpace.BlockSize;

    /// <summary>
    /// The <c>veritysetup</c> arguments that open or verify the exported file as both data and hash device
    /// (<c>veritysetup verify FILE FILE ROOT ARGS</c>); empty without verity.
    /// </summary>
    public string VeritySetupArguments => Verity is null
        ? ""
        : Verity.WithSuperblock
            ? $"--hash-offset={HashOffset}"
            : $"--no-superblock --format=1 --hash=sha256 --data-block-size=4096 --hash-block-size=4096 " +
              $"--data-blocks={DataBlocks} --hash-offset={HashOffset} --salt={(Verity.Salt.Length == 0 ? "-" : Convert.ToHexStringLower(Verity.Salt))}";
}

/// <summary>
/// Writes a <see cref="BlockAddressSpace"/> to a raw disk image file (upstream's <c>nydus-image export --block</c>),
/// optionally followed by a dm-verity hash area (<see cref="VerityHashTree"/>) starting at the end of the data.
/// The file is written under a temporary name next to the target and renamed at the end, so a failed export
/// leaves no partial image behind and never damages an existing file. Holes are not written (the file is sparse).
/// </summary>
public static class BlockExporter
{
    /// <summary>Bytes read from the device per step (upstream's BLOCK_DEVICE_EXPORT_BATCH_SIZE).</summary>
    public const int BatchSize = 512 << 10;

    public static BlockExportResult Export(BlockAddressSpace device, string outputPath, VerityParameters? verity,
        CancellationToken cancellation = default)
    {
        string fullPath = Path.GetFullPath(outputPath);
        string temporary = Path.Combine(Path.GetDirectoryName(fullPath)!, $".{Path.GetFileName(fullPath)}.{Environment.ProcessId}.partial");
        var tree = verity is null ? null : new VerityHashTree(verity, device.BlockCount);
        byte[]? root = null;
        try
        {
            using (var handle = File.OpenHandle(temporary, FileMode.CreateNew, FileAccess.ReadWrite))
            {
                var buffer = new byte[BatchSize];
                foreach (BlockExtent extent in device.Extents)
                {
                    if (extent.Kind == BlockExtentKind.Hole)
                    {
                        tree?.AddZeroBlocks(extent.BlockCount);
                        continue;
                    }

                    for (long block = extent.StartBlock; block < extent.EndBlock;)
                    {
                        cancellation.ThrowIfCancellationRequested();
                        int blocks = (int)Math.Min(BatchSize / BlockAddressSpace.BlockSize, extent.EndBlock - block);
                        Span<byte> chunk = buffer.AsSpan(0, blocks * BlockAddressSpace.BlockSize);
                        device.Read(block * BlockAddressSpace.BlockSize, chunk);
                        RandomAccess.Write(handle, chunk, block * BlockAddressSpace.BlockSize);
                        for (int i = 0; i < blocks && tree is not null; i++)
                        {
                            tree.Add(chunk.Slice(i * BlockAddressSpace.BlockSize, BlockAddressSpace.BlockSize));
                        }

                        block += blocks;
                    }
                }

                RandomAccess.SetLength(handle, device.Size);
                if (tree is not null)
                {
                    (byte[] area, root) = tree.Finish();
                    RandomAccess.Write(handle, area, device.Size);
                }

                RandomAccess.FlushToDisk(handle);
            }

            File.Move(temporary, fullPath, overwrite: true);
            return new BlockExportResult(fullPath, device.BlockCount, device.Size, root, verity);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }
}
