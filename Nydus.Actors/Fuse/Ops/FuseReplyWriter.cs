using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.FileSystem;
using Nydus.Actors.Interop;

namespace Nydus.Actors.Fuse.Ops;

/// <summary>Lays replies out in a worker's reply buffer: fuse_out_header, then the body.</summary>
internal static class FuseReplyWriter
{
    public static readonly int HeaderSize = Unsafe.SizeOf<FuseOutHeader>();

    /// <summary>Writes the header for a reply whose body (already in place) is <paramref name="bodyLength"/> bytes.</summary>
    public static int Complete(Span<byte> reply, ulong unique, int bodyLength)
    {
        var header = new FuseOutHeader { Length = (uint)(HeaderSize + bodyLength), Error = 0, Unique = unique };
        MemoryMarshal.Write(reply, in header);
        return HeaderSize + bodyLength;
    }

    /// <summary>A header-only error reply (negated errno).</summary>
    public static int Error(Span<byte> reply, ulong unique, Errno errno)
    {
        var header = new FuseOutHeader { Length = (uint)HeaderSize, Error = -(int)errno, Unique = unique };
        MemoryMarshal.Write(reply, in header);
        return HeaderSize;
    }

    /// <summary>A reply made of one fixed struct.</summary>
    public static int Struct<T>(Span<byte> reply, ulong unique, in T body)
        where T : struct
    {
        MemoryMarshal.Write(reply[HeaderSize..], in body);
        return Complete(reply, unique, Unsafe.SizeOf<T>());
    }

    /// <summary>Body area of the reply buffer.</summary>
    public static Span<byte> Body(Span<byte> reply) => reply[HeaderSize..];

    public static void FillEntryOut(ref FuseEntryOut output, in FuseEntry entry)
    {
        output.NodeId = entry.NodeId;
        output.Generation = entry.Generation;
        SplitTimeout(entry.EntryTimeout, out output.EntryValid, out output.EntryValidNsec);
        SplitTimeout(entry.AttrTimeout, out output.AttrValid, out output.AttrValidNsec);
        output.Attr = entry.Attr;
    }

    public static void SplitTimeout(TimeSpan timeout, out ulong seconds, out uint nanoseconds)
    {
        if (timeout <= TimeSpan.Zero)
        {
            seconds = 0;
            nanoseconds = 0;
            return;
        }

        seconds = (ulong)(timeout.Ticks / TimeSpan.TicksPerSecond);
        nanoseconds = (uint)(timeout.Ticks % TimeSpan.TicksPerSecond * 100);
    }
}
