using System.Runtime.InteropServices;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.Ops;

namespace Nydus.Actors.Fuse.FileSystem;

/// <summary>
/// Appends directory entries (fuse_dirent, or fuse_direntplus for READDIRPLUS) straight into the reply
/// buffer. A file system stops listing when an add returns false; the entry that did not fit is listed
/// again by the next READDIR, which starts at the offset of the last entry that fit.
/// </summary>
public ref struct FuseDirectoryWriter
{
    private static readonly int DirentSize = Marshal.SizeOf<FuseDirent>();
    private static readonly int DirentPlusSize = Marshal.SizeOf<FuseDirentPlus>();

    private static readonly FuseEntry NoEntry = default;

    private readonly Span<byte> _buffer;
    private int _written;

    public FuseDirectoryWriter(Span<byte> buffer, bool plus)
    {
        _buffer = buffer;
        IsPlus = plus;
        _written = 0;
    }

    /// <summary>True for READDIRPLUS: entries carry attributes and each non-dot entry is a lookup reference.</summary>
    public bool IsPlus { get; }

    public int BytesWritten => _written;

    /// <summary>Whether an entry with a name of this length still fits; check before doing a lookup for it.</summary>
    public readonly bool HasRoomFor(int nameLength) => _written + RecordSize(nameLength) <= _buffer.Length;

    /// <summary>
    /// Adds an entry without attributes. In READDIRPLUS mode the entry goes out with node id 0, which tells
    /// the kernel not to create a dentry (right for "." and "..", which take no lookup reference).
    /// </summary>
    /// <param name="inode">The inode number readdir(3) reports.</param>
    /// <param name="name">Entry name without terminator.</param>
    /// <param name="direntType">DT_* type (mode &gt;&gt; 12).</param>
    /// <param name="nextOffset">The offset the next READDIR should pass to continue after this entry.</param>
    public bool TryAdd(ulong inode, scoped ReadOnlySpan<byte> name, uint direntType, long nextOffset)
    {
        if (IsPlus)
        {
            var entry = default(FuseEntry);
            entry.Attr.Ino = inode;
            entry.Attr.Mode = direntType << 12;
            return Append(in entry, inode, name, direntType, nextOffset);
        }

        return Append(in NoEntry, inode, name, direntType, nextOffset);
    }

    /// <summary>Adds an entry with attributes (READDIRPLUS). The node's lookup count rises by one if it fits.</summary>
    public bool TryAddPlus(in FuseEntry entry, scoped ReadOnlySpan<byte> name, long nextOffset) =>
        Append(in entry, entry.Attr.Ino, name, entry.Attr.Mode >> 12 & 0xF, nextOffset);

    private bool Append(in FuseEntry entry, ulong inode, scoped ReadOnlySpan<byte> name, uint direntType, long nextOffset)
    {
        int size = RecordSize(name.Length);
        if (_written + size > _buffer.Length)
        {
            return false;
        }

        Span<byte> record = _buffer.Slice(_written, size);
        var dirent = new FuseDirent
        {
            Ino = inode,
            Off = (ulong)nextOffset,
            NameLength = (uint)name.Length,
            Type = direntType,
        };
        int nameStart;
        if (IsPlus)
        {
            var plus = new FuseDirentPlus { Dirent = dirent };
            FuseReplyWriter.FillEntryOut(ref plus.EntryOut, in entry);
            MemoryMarshal.Write(record, in plus);
            nameStart = DirentPlusSize;
        }
        else
        {
            MemoryMarshal.Write(record, in dirent);
            nameStart = DirentSize;
        }

        name.CopyTo(record[nameStart..]);
        record[(nameStart + name.Length)..].Clear();
        _written += size;
        return true;
    }

    /// <summary>
    /// Moves the node ids of the READDIRPLUS entries written from byte <paramref name="from"/> on into another id
    /// space: <c>nodeId | high</c>, also as the attributes' and the dirent's inode number (a VFS prefixes its
    /// instance index). Entries without a node (".", "..", TryAdd) stay as they are.
    /// </summary>
    public void SetNodeIdHighBits(int from, ulong high)
    {
        if (!IsPlus)
        {
            return;
        }

        for (int at = from; at + DirentPlusSize <= _written;)
        {
            Span<byte> record = _buffer[at..];
            ref FuseDirentPlus plus = ref MemoryMarshal.AsRef<FuseDirentPlus>(record[..DirentPlusSize]);
            if (plus.EntryOut.NodeId != 0)
            {
                plus.EntryOut.NodeId |= high;
                plus.EntryOut.Attr.Ino = plus.EntryOut.NodeId;
                plus.Dirent.Ino = plus.EntryOut.NodeId;
            }

            at += RecordSize((int)plus.Dirent.NameLength);
        }
    }

    private readonly int RecordSize(int nameLength) =>
        ((IsPlus ? DirentPlusSize : DirentSize) + nameLength + 7) & ~7;
}
