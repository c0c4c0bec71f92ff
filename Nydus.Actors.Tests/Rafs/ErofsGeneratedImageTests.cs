using System.Text;
using Nydus.Actors.Rafs;
using Nydus.Actors.Rafs.Metadata;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Rafs;

/// <summary>
/// Builds images of a corner-case source tree with Debian's mkfs.erofs 1.5 and checks that the reader's view of
/// each equals the source: types, modes, owners, sizes, link counts and hard-link grouping, mtimes, symlink
/// targets, device numbers, xattrs and full contents.
/// </summary>
public sealed class ErofsGeneratedImageTests : IClassFixture<GeneratedTreeFixture>
{
    private readonly GeneratedTreeFixture _fixture;

    public ErofsGeneratedImageTests(GeneratedTreeFixture fixture)
    {
        _fixture = fixture;
    }

    public static TheoryData<string, bool, string[]> Variants() => new()
    {
        { "inline", false, Array.Empty<string>() },
        { "noinline", false, new[] { "-Enoinline_data" } },
        { "chunk4k-blockmap", false, new[] { "--chunksize=4096" } },
        { "chunk4k-blobdev", true, new[] { "--chunksize=4096" } },
        { "chunk1m-blobdev", true, new[] { "--chunksize=1048576" } },
        { "compact-T0", false, new[] { "-T0" } },
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public void Image_view_equals_source_tree(string name, bool blobDevice, string[] options)
    {
        (string imagePath, string? blob) = _fixture.MakeImage(name, blobDevice, options);
        BlobSource source = blob is null ? BlobSource.None : BlobSource.FromDevices(blob);
        using RafsImage image = RafsImage.Open(imagePath, source, new RafsOpenOptions { DefaultUid = 99, DefaultGid = 98 });
        Assert.Equal(RafsFormat.Erofs, image.Format);

        ImageTreeNode root = ImageTreeWalker.Walk(image);
        var actual = ImageTreeWalker.Flatten(root).ToDictionary(n => n.Path, StringComparer.Ordinal);
        Assert.Equal(_fixture.Expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));

        bool fixedTime = options.Contains("-T0");
        var inodeBySource = new Dictionary<ulong, ulong>();
        foreach (TreeEntry expected in _fixture.Expected.Values)
        {
            ImageTreeNode node = actual[expected.Path];
            string where = $"{name}:{expected.Path}";
            Assert.True(expected.Mode == node.Attr.Mode, $"{where} mode {node.Attr.Mode:x} != {expected.Mode:x}");
            Assert.True(expected.Uid == node.Attr.Uid && expected.Gid == node.Attr.Gid,
                $"{where} owner {node.Attr.Uid}:{node.Attr.Gid} != {expected.Uid}:{expected.Gid}");
            Assert.True(expected.NLink == node.Attr.NLink, $"{where} nlink {node.Attr.NLink} != {expected.NLink}");
            Assert.True(expected.Rdev == node.Attr.Rdev, $"{where} rdev {node.Attr.Rdev:x} != {expected.Rdev:x}");
            if (fixedTime)
            {
                Assert.Equal(0L, node.Attr.MtimeSeconds);
            }
            else
            {
                Assert.True(expected.MtimeSeconds == node.Attr.MtimeSeconds && expected.MtimeNanoseconds == node.Attr.MtimeNanoseconds,
                    $"{where} mtime {node.Attr.MtimeSeconds}.{node.Attr.MtimeNanoseconds} != {expected.MtimeSeconds}.{expected.MtimeNanoseconds}");
            }

            // Hard links: one image inode per source inode, in both directions.
            if (inodeBySource.TryGetValue(expected.SourceInode, out ulong seen))
            {
                Assert.True(seen == node.Ino, $"{where} is a hard link but has ino {node.Ino}, not {seen}");
            }
            else
            {
                Assert.DoesNotContain(node.Ino, inodeBySource.Values);
                inodeBySource[expected.SourceInode] = node.Ino;
            }

            if (expected.Type != 'l')
            {
                Assert.Equal(expected.Xattrs.Keys, node.Xattrs.Keys);
                foreach ((string key, byte[] value) in expected.Xattrs)
                {
                    Assert.True(value.AsSpan().SequenceEqual(node.Xattrs[key]), $"{where} xattr {key} differs");
                }
            }

            switch (expected.Type)
            {
                case 'l':
                    Assert.Equal(expected.LinkTarget, Encoding.UTF8.GetString(node.LinkTarget!));
                    Assert.Equal((ulong)expected.Size, node.Attr.Size);
                    break;
                case 'f':
                    Assert.Equal((ulong)expected.Size, node.Attr.Size);
                    byte[] content = ImageTreeWalker.ReadAll(image, node.Ino, step: 70_001);
                    byte[] original = File.ReadAllBytes(_fixture.Tree.Root + expected.Path);
                    Assert.True(original.AsSpan().SequenceEqual(content), $"{where} content differs");
                    break;
            }
        }
    }

    [Fact]
    public void Lookup_readdir_offsets_and_xattr_probes_behave_like_the_kernel()
    {
        (string imagePath, _) = _fixture.MakeImage("api", false);
        using RafsImage image = RafsImage.Open(imagePath, BlobSource.None);
        Assert.True(image.TryLookup(image.RootInode, "huge"u8, out ulong huge));

        // Resume readdir from every 997th offset: the entries after an offset must be the same as in one pass.
        var all = new ImageTreeWalker.CollectingSink();
        image.ReadDir(huge, 0, ref all);
        Assert.Equal(5002, all.Entries.Count);
        for (int offset = 0; offset < all.Entries.Count; offset += 997)
        {
            var part = new LimitedSink(3);
            image.ReadDir(huge, offset, ref part);
            for (int i = 0; i < part.Names.Count; i++)
            {
                Assert.Equal(all.Entries[offset + i].Name, part.Names[i]);
                Assert.Equal(offset + i + 1, part.NextOffsets[i]);
            }
        }

        foreach ((byte[] name, ulong ino, _) in all.Entries)
        {
            Assert.True(image.TryLookup(huge, name, out ulong found));
            Assert.Equal(ino, found);
        }

        Assert.False(image.TryLookup(huge, "entry-99999"u8, out _));
        Assert.False(image.TryLookup(huge, "\u0001"u8, out _));
        Assert.False(image.TryLookup(huge, "zzzz"u8, out _));
        Assert.True(image.TryLookup(image.RootInode, ".."u8, out ulong up));
        Assert.Equal(image.RootInode, up);

        Assert.True(image.TryLookup(image.RootInode, "xattrs"u8, out ulong dir));
        Assert.True(image.TryLookup(dir, "one"u8, out ulong one));
        Assert.Equal(5, image.GetXattr(one, "user.greeting"u8, Span<byte>.Empty));
        Assert.Equal(0, image.GetXattr(one, "user.empty"u8, Span<byte>.Empty));
        Assert.Equal(-1, image.GetXattr(one, "user.missing"u8, new byte[100]));
        Assert.Equal(-1, image.GetXattr(one, "user."u8, new byte[100]));
        int listLength = image.ListXattrs(one, Span<byte>.Empty);
        Assert.Equal("user.greeting\0trusted.secret\0user.empty\0user.long\0".Length, listLength);
    }

    private struct LimitedSink : IDirEntrySink
    {
        private readonly int _limit;

        public LimitedSink(int limit)
        {
            _limit = limit;
            Names = new();
            NextOffsets = new();
        }

        public List<byte[]> Names { get; }

        public List<long> NextOffsets { get; }

        public bool TryAdd(scoped ReadOnlySpan<byte> name, ulong ino, InodeType type, long nextOffset)
        {
            if (Names.Count == _limit)
            {
                return false;
            }

            Names.Add(name.ToArray());
            NextOffsets.Add(nextOffset);
            return true;
        }
    }
}
