using Nydus.Actors.Rafs.Metadata;

namespace Nydus.Actors.Rafs.Layout.V6;

internal sealed class ErofsImage : RafsImage
{
    private readonly ErofsSuperBlock _sb;

    public ErofsImage(ImageData data, BlobSource blobs, RafsOpenOptions options)
        : base(data, options)
    {
        _sb = ErofsSuperBlock.Load(data);
    }

    public override RafsFormat Format => _sb.IsRafsV6 ? RafsFormat.RafsV6 : RafsFormat.Erofs;

    public override ulong RootInode => _sb.RootNid;

    public override bool HasXattrs => true;

    public override ulong InodeCount => _sb.Inodes;

    public override InodeAttr GetAttr(ulong ino) => throw new NotImplementedException();

    public override bool TryLookup(ulong parent, ReadOnlySpan<byte> name, out ulong ino) => throw new NotImplementedException();

    public override void ReadDir<TSink>(ulong ino, long offset, ref TSink sink) => throw new NotImplementedException();

    public override int ReadLink(ulong ino, Span<byte> destination) => throw new NotImplementedException();

    public override int ListXattrs(ulong ino, Span<byte> destination) => throw new NotImplementedException();

    public override int GetXattr(ulong ino, ReadOnlySpan<byte> name, Span<byte> destination) => throw new NotImplementedException();

    public override int Read(ulong ino, long offset, Span<byte> destination) => throw new NotImplementedException();
}
