using System.Text;
using Nydus.Actors.Rafs;
using Nydus.Actors.Rafs.Metadata;

namespace Nydus.Actors.Tests.Support;

/// <summary>One entry of an image as seen through the public <see cref="RafsImage"/> API.</summary>
public sealed class ImageTreeNode
{
    public required string Path { get; init; }

    public required ulong Ino { get; init; }

    public required InodeAttr Attr { get; init; }

    public byte[]? LinkTarget { get; init; }

    public List<ImageTreeNode> Children { get; } = new();

    public SortedDictionary<string, byte[]> Xattrs { get; } = new(StringComparer.Ordinal);
}

/// <summary>
/// Walks a whole image (readdir + lookup + getattr + readlink + xattrs) into a tree, with bounded depth and
/// entry count so a corrupt image that loops cannot hang a test.
/// </summary>
public static class ImageTreeWalker
{
    public const int MaxDepth = 128;

    public static ImageTreeNode Walk(RafsImage image, int maxEntries = 200_000, bool readXattrs = true)
    {
        int budget = maxEntries;
        return Visit(image, image.RootInode, "/", 0, ref budget, readXattrs);
    }

    /// <summary>All nodes in pre-order.</summary>
    public static IEnumerable<ImageTreeNode> Flatten(ImageTreeNode root)
    {
        yield return root;
        foreach (ImageTreeNode child in root.Children)
        {
            foreach (ImageTreeNode n in Flatten(child))
            {
                yield return n;
            }
        }
    }

    /// <summary>Reads a whole file through <see cref="RafsImage.Read"/> in pieces of <paramref name="step"/> bytes.</summary>
    public static byte[] ReadAll(RafsImage image, ulong ino, int step = 128 * 1024)
    {
        InodeAttr attr = image.GetAttr(ino);
        var content = new byte[checked((int)attr.Size)];
        long pos = 0;
        while (pos < content.Length)
        {
            int n = image.Read(ino, pos, content.AsSpan((int)pos, (int)Math.Min(step, content.Length - pos)));
            if (n <= 0)
            {
                throw new InvalidOperationException($"short read of inode {ino} at {pos} of {content.Length}");
            }

            pos += n;
        }

        if (image.Read(ino, pos, new byte[16]) != 0)
        {
            throw new InvalidOperationException($"read past end of inode {ino} returned data");
        }

        return content;
    }

    private static ImageTreeNode Visit(RafsImage image, ulong ino, string path, int depth, ref int budget, bool readXattrs)
    {
        if (--budget < 0)
        {
            throw new RafsException(RafsErrorKind.InvalidDirectory, $"walk of {image.Path} exceeded its entry budget at {path}");
        }

        if (depth > MaxDepth)
        {
            throw new RafsException(RafsErrorKind.InvalidDirectory, $"walk of {image.Path} deeper than {MaxDepth} at {path}");
        }

        InodeAttr attr = image.GetAttr(ino);
        var node = new ImageTreeNode
        {
            Path = path,
            Ino = ino,
            Attr = attr,
            LinkTarget = attr.Type == InodeType.Symlink ? image.ReadLink(ino) : null,
        };

        if (readXattrs && image.HasXattrs)
        {
            int listLength = image.ListXattrs(ino, Span<byte>.Empty);
            var list = new byte[listLength];
            image.ListXattrs(ino, list);
            foreach (string name in Encoding.UTF8.GetString(list).Split('\0', StringSplitOptions.RemoveEmptyEntries))
            {
                byte[] nameBytes = Encoding.UTF8.GetBytes(name);
                int valueLength = image.GetXattr(ino, nameBytes, Span<byte>.Empty);
                var value = new byte[Math.Max(valueLength, 0)];
                image.GetXattr(ino, nameBytes, value);
                node.Xattrs[name] = value;
            }
        }

        if (attr.Type != InodeType.Directory)
        {
            return node;
        }

        var sink = new CollectingSink();
        image.ReadDir(ino, 0, ref sink);
        foreach ((byte[] name, ulong childIno, InodeType type) in sink.Entries)
        {
            if (name.AsSpan().SequenceEqual("."u8) || name.AsSpan().SequenceEqual(".."u8))
            {
                continue;
            }

            if (!image.TryLookup(ino, name, out ulong looked) || looked != childIno)
            {
                throw new InvalidOperationException($"lookup of {path}{Encoding.UTF8.GetString(name)} disagrees with readdir");
            }

            string childPath = (path == "/" ? "/" : path + "/") + Encoding.UTF8.GetString(name);
            ImageTreeNode child = Visit(image, childIno, childPath, depth + 1, ref budget, readXattrs);
            if (child.Attr.Type != type)
            {
                throw new InvalidOperationException($"readdir type {type} of {childPath} differs from getattr {child.Attr.Type}");
            }

            node.Children.Add(child);
        }

        return node;
    }

    /// <summary>Collects every entry (a test helper, so allocation is fine here).</summary>
    public struct CollectingSink : IDirEntrySink
    {
        public CollectingSink()
        {
        }

        public List<(byte[] Name, ulong Ino, InodeType Type)> Entries { get; } = new();

        public bool TryAdd(scoped ReadOnlySpan<byte> name, ulong ino, InodeType type, long nextOffset)
        {
            Entries.Add((name.ToArray(), ino, type));
            return true;
        }
    }
}
