namespace Nydus.Actors.Tests.Support;

/// <summary>
/// The kernel's own EROFS driver mounting an image read-only, the oracle the FUSE mount is compared with. The image
/// (and the blob device of a `mkfs.erofs --blobdev` image) are attached to loop devices explicitly so that dispose
/// can detach exactly those: unmount with MNT_DETACH, then `losetup -d`, even when the test failed half way.
/// </summary>
public sealed class KernelErofsMount : IDisposable
{
    private readonly List<string> _loopDevices = new();
    private readonly TempDir _dir = new("kernel-erofs");

    public KernelErofsMount(string image, string? blobDevice)
    {
        try
        {
            Directory.CreateDirectory(MountPoint);
            string? blobLoop = blobDevice is null ? null : Attach(blobDevice);
            string imageLoop = Attach(image);
            string options = blobLoop is null ? "ro" : "ro,device=" + blobLoop;
            TreeBuilder.Run("mount", "-t", "erofs", "-o", options, imageLoop, MountPoint);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public string MountPoint => _dir.Combine("mnt");

    private string Attach(string file)
    {
        string device = TreeBuilder.Run("losetup", "--find", "--show", "--read-only", file).Trim();
        _loopDevices.Add(device);
        return device;
    }

    public void Dispose()
    {
        try
        {
            NydusdMount.DetachIfMounted(MountPoint);
        }
        finally
        {
            foreach (string device in _loopDevices)
            {
                try
                {
                    TreeBuilder.Run("losetup", "-d", device);
                }
                catch (InvalidOperationException)
                {
                    // A lazily unmounted filesystem may still hold it; the kernel frees it once released (autoclear).
                }
            }

            _dir.Dispose();
        }
    }
}
