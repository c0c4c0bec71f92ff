using Nydus.Actors.Passthrough;
using Nydus.Actors.Rafs;
using Nydus.Actors.Storage;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Vfs;
using Xunit;

namespace Nydus.Actors.Tests.Vfs;

/// <summary>
/// The virtual filesystem over a real FUSE mount: several instances at virtual mountpoints read by ordinary file
/// calls, remount under an open file, umount of one while the others serve.
/// </summary>
public sealed class VirtualFileSystemMountTests : IDisposable
{
    private readonly string _trees = Path.Combine(Path.GetTempPath(), "nydus-vfs-" + Guid.NewGuid().ToString("N"));

    public VirtualFileSystemMountTests() => Directory.CreateDirectory(_trees);

    public void Dispose()
    {
        try { Directory.Delete(_trees, recursive: true); }
        catch (IOException) { }
    }

    private string Tree(string name, params (string Path, string Content)[] files)
    {
        string dir = Path.Combine(_trees, name);
        foreach (var (path, content) in files)
        {
            string full = Path.Combine(dir, path);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            File.WriteAllText(full, content);
        }
        return dir;
    }

    private static FuseTestMount StartVfs(out VirtualFileSystem vfs, Action<VirtualFileSystem> mounts)
    {
        VirtualFileSystem? created = null;
        var mount = FuseTestMount.StartPassthrough(writable: false, workers: 2,
            prepare: backing => File.WriteAllText(Path.Combine(backing, "root.txt"), "root instance"),
            wrap: root =>
            {
                created = new VirtualFileSystem();
                created.Mount("/", root);
                mounts(created);
                return created;
            });
        vfs = created!;
        vfs.Notifier = mount.Session.Notifier;
        return mount;
    }

    [FuseFact]
    public void ThreeInstances_AtDifferentMountpoints_AreReadFully()
    {
        string a = Tree("a", ("one.txt", "alpha"), ("sub/deep.txt", new string('a', 300_000)));
        string b = Tree("b", ("two.txt", "beta"));
        using var mount = StartVfs(out var vfs, v =>
        {
            v.Mount("/images/a", new PassthroughFileSystem(a, writable: false));
            v.Mount("/images/b/c", new PassthroughFileSystem(b, writable: false));
        });

        Assert.Equal("root instance", File.ReadAllText(mount.Mounted("root.txt")));
        Assert.Equal("alpha", File.ReadAllText(mount.Mounted("images", "a", "one.txt")));
        Assert.Equal(new string('a', 300_000), File.ReadAllText(mount.Mounted("images", "a", "sub", "deep.txt")));
        Assert.Equal("beta", File.ReadAllText(mount.Mounted("images", "b", "c", "two.txt")));
        Assert.Equal(["a", "b"], Directory.GetDirectories(mount.Mounted("images")).Select(Path.GetFileName).Order());
        Assert.Equal(["one.txt", "sub"], Directory.GetFileSystemEntries(mount.Mounted("images", "a")).Select(Path.GetFileName).Order());

        // Node ids carry the instance index in their top byte, so inodes of different instances never collide.
        Assert.Equal(["/", "/images/a", "/images/b/c"], vfs.Mounts.Keys);
        Assert.NotEqual(vfs.IndexOf("/images/a"), vfs.IndexOf("/images/b/c"));
    }

    [FuseFact]
    public void Remount_UnderAnOpenFile_KeepsTheOldReader_AndAFreshOpenSeesTheNewImage()
    {
        string v1 = Tree("v1", ("data.txt", "version one"));
        string v2 = Tree("v2", ("data.txt", "version two, longer"));
        using var mount = StartVfs(out var vfs, v => v.Mount("/app", new PassthroughFileSystem(v1, writable: false)));

        string file = mount.Mounted("app", "data.txt");
        using (var held = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1))
        {
            var first = new byte[4];
            Assert.Equal(4, held.Read(first));

            vfs.Remount("/app", new PassthroughFileSystem(v2, writable: false));

            // The held file still reads the instance it was opened on; a fresh open reaches the new instance.
            using var rest = new StreamReader(held);
            Assert.Equal("ion one", rest.ReadToEnd());
            Assert.Equal("version two, longer", File.ReadAllText(file));
        }

        Assert.Equal("version two, longer", File.ReadAllText(file));
        Assert.Equal(["/", "/app"], vfs.Mounts.Keys);
    }

    [FuseFact]
    public void Umount_OfOneInstance_LeavesTheOthersServing()
    {
        string a = Tree("a", ("a.txt", "alpha"));
        string b = Tree("b", ("b.txt", "beta"));
        using var mount = StartVfs(out var vfs, v =>
        {
            v.Mount("/a", new PassthroughFileSystem(a, writable: false));
            v.Mount("/b", new PassthroughFileSystem(b, writable: false));
        });
        Assert.Equal("alpha", File.ReadAllText(mount.Mounted("a", "a.txt")));

        vfs.Umount("/a");

        Assert.False(File.Exists(mount.Mounted("a", "a.txt")));
        Assert.Equal("beta", File.ReadAllText(mount.Mounted("b", "b.txt")));
        Assert.Equal("root instance", File.ReadAllText(mount.Mounted("root.txt")));
        Assert.Equal(["/", "/b"], vfs.Mounts.Keys);
        Assert.Throws<KeyNotFoundException>(() => vfs.Umount("/a"));
    }

    /// <summary>Mounts an EROFS image of <paramref name="source"/> as a RAFS instance (its data is in the image).</summary>
    private void MountImage(VirtualFileSystem vfs, string mountpoint, string source)
    {
        string file = Path.Combine(_trees, Guid.NewGuid().ToString("N") + ".img");
        TreeBuilder.Run("mkfs.erofs", "--quiet", file, source);
        var image = RafsImage.Open(file, BlobSource.None);
        vfs.Mount(mountpoint, new RafsFileSystem(image), owner: image);
    }

    [FuseFact]
    public void An_image_beside_a_passthrough_is_opened_with_handles_so_the_passthrough_keeps_working()
    {
        string img = Tree("img", ("i.txt", "from the image"), ("sub/j.txt", "deeper"));
        string rw = Tree("rw", ("w.txt", "host file"), ("d/x.txt", "host dir"));
        using var mount = StartVfs(out var vfs, v =>
        {
            v.Mount("/rw", new PassthroughFileSystem(rw, writable: false));
            MountImage(v, "/img", img);
        });

        // The image answers OPEN and OPENDIR with ENOSYS; passed on, the kernel would stop opening the passthrough too.
        Assert.Equal("from the image", File.ReadAllText(mount.Mounted("img", "i.txt")));
        Assert.Equal(["i.txt", "sub"], Directory.GetFileSystemEntries(mount.Mounted("img")).Select(Path.GetFileName).Order());
        Assert.Equal("deeper", File.ReadAllText(mount.Mounted("img", "sub", "j.txt")));
        Assert.False(vfs.ZeroMessageOpen);

        // The passthrough reads through the handles its OPEN and OPENDIR return.
        Assert.Equal("host file", File.ReadAllText(mount.Mounted("rw", "w.txt")));
        Assert.Equal(["d", "w.txt"], Directory.GetFileSystemEntries(mount.Mounted("rw")).Select(Path.GetFileName).Order());
        Assert.Equal("host dir", File.ReadAllText(mount.Mounted("rw", "d", "x.txt")));
        Assert.Equal("from the image", File.ReadAllText(mount.Mounted("img", "i.txt")));
    }

    [FuseFact]
    public void Images_alone_are_opened_without_requests_and_then_a_passthrough_is_refused_with_a_clear_error()
    {
        string img = Tree("img", ("i.txt", "from the image"));
        string other = Tree("other", ("o.txt", "other"));
        using var mount = StartVfs(out var vfs, v => { });
        // The root instance of StartVfs is a passthrough: take it away, so that only images are served.
        vfs.Umount("/");
        MountImage(vfs, "/img", img);

        Assert.Equal("from the image", File.ReadAllText(mount.Mounted("img", "i.txt")));
        Assert.True(vfs.ZeroMessageOpen);

        var refused = Assert.Throws<InvalidOperationException>(() => vfs.Mount("/other", new PassthroughFileSystem(other, writable: false)));
        Assert.Contains("without OPEN", refused.Message);
        Assert.Equal(["/img"], vfs.Mounts.Keys);
        // Another image is welcome, and the first still serves.
        MountImage(vfs, "/img2", other);
        Assert.Equal("other", File.ReadAllText(mount.Mounted("img2", "o.txt")));
        Assert.Equal("from the image", File.ReadAllText(mount.Mounted("img", "i.txt")));
    }

    [Fact]
    public void BadMountpoints_AreRefused_AndTheTableIsUntouched()
    {
        using var vfs = new VirtualFileSystem();
        string a = Tree("a", ("a.txt", "alpha"));
        vfs.Mount("/x", new PassthroughFileSystem(a, writable: false));

        var busy = new PassthroughFileSystem(a, writable: false);
        Assert.Throws<InvalidOperationException>(() => vfs.Mount("/x", busy));
        busy.Dispose();
        Assert.Throws<ArgumentException>(() => vfs.Mount("relative", new PassthroughFileSystem(a, writable: false)));
        Assert.Throws<ArgumentException>(() => vfs.Mount("/x/../y", new PassthroughFileSystem(a, writable: false)));
        Assert.Throws<InvalidOperationException>(() => vfs.Mount("/x/inner", new PassthroughFileSystem(a, writable: false)));
        Assert.Throws<KeyNotFoundException>(() => vfs.Remount("/nothing", new PassthroughFileSystem(a, writable: false)));

        Assert.Equal(["/x"], vfs.Mounts.Keys);
    }
}
