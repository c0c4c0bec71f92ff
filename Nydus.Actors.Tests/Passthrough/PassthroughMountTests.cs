using System.Diagnostics;
using System.Text;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Passthrough;

/// <summary>A writable passthrough mount used through ordinary .NET file APIs, libc calls and the attr tools.</summary>
public class PassthroughMountTests
{
    [FuseFact]
    public void CreateWriteRead_ThroughMount_LandsInBackingDirectory()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true);

        File.WriteAllText(mount.Mounted("hello.txt"), "hello through fuse");

        Assert.Equal("hello through fuse", File.ReadAllText(mount.Backed("hello.txt")));
        Assert.Equal("hello through fuse", File.ReadAllText(mount.Mounted("hello.txt")));
        Assert.Equal(Errno.EEXIST, FusePosix.Open(mount.Mounted("hello.txt"), Libc.O_WRONLY | Libc.O_CREAT | Libc.O_EXCL));
        Assert.Equal(Errno.ENOENT, FusePosix.Open(mount.Mounted("missing.txt"), Libc.O_RDONLY));
    }

    [FuseFact]
    public void Closing_files_on_a_local_shared_directory_costs_no_FLUSH_and_loses_no_byte()
    {
        // The backing directory is under the temp dir (ext4 or tmpfs here): its files have no flush, so they are opened
        // with FOPEN_NOFLUSH and close(2) reaches the daemon as no request at all.
        using var mount = FuseTestMount.StartPassthrough(writable: true);
        var passthrough = (Nydus.Actors.Passthrough.PassthroughFileSystem)mount.FileSystem;
        for (int i = 0; i < 20; i++)
        {
            var bytes = Encoding.UTF8.GetBytes($"file {i} " + new string('x', i * 100));
            File.WriteAllBytes(mount.Mounted($"f{i}"), bytes); // CREATE, write, close
            Assert.Equal(bytes, File.ReadAllBytes(mount.Backed($"f{i}")));
            Assert.Equal(bytes, File.ReadAllBytes(mount.Mounted($"f{i}"))); // OPEN, read, close
            File.AppendAllText(mount.Mounted($"f{i}"), "!"); // OPEN for writing, close
            Assert.Equal(bytes.Length + 1, new FileInfo(mount.Backed($"f{i}")).Length);
        }
        Assert.Equal(0, passthrough.FlushRequests);
    }

    [FuseFact]
    public void AppendAndTruncate_ThroughMount_ChangeBackingFile()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true);
        string file = mount.Mounted("log.txt");

        File.AppendAllText(file, "first;");
        File.AppendAllText(file, "second;");
        Assert.Equal("first;second;", File.ReadAllText(mount.Backed("log.txt")));

        using (var stream = new FileStream(file, FileMode.Open, FileAccess.ReadWrite))
        {
            stream.SetLength(5);
        }

        Assert.Equal("first", File.ReadAllText(mount.Backed("log.txt")));

        // O_TRUNC on open (OPEN, then SETATTR of size 0: ATOMIC_O_TRUNC is not negotiated).
        using (new FileStream(file, FileMode.Truncate, FileAccess.Write))
        {
        }

        Assert.Equal(0, new FileInfo(mount.Backed("log.txt")).Length);
        Assert.Equal(0, new FileInfo(file).Length);
    }

    [FuseFact]
    public void WritebackCache_WriteOnlyAndAppend_StillLandCorrectly()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true,
            initOptions: Nydus.Actors.Fuse.Ops.FuseInitOptions.WritablePassthrough(writebackCache: true));
        string file = mount.Mounted("buffered.txt");

        using (var stream = new FileStream(file, FileMode.Create, FileAccess.Write))
        {
            stream.Write("0123456789"u8);
        }

        File.AppendAllText(file, "-appended");
        using (var stream = new FileStream(file, FileMode.Open, FileAccess.Write))
        {
            stream.Position = 2;
            stream.Write("ab"u8);
        }

        Assert.True(mount.Session.Dispatcher.Connection!.Flags.HasFlag(Nydus.Actors.Fuse.Abi.FuseInitFlags.WritebackCache));
        Assert.Equal("01ab456789-appended", File.ReadAllText(file));
        Assert.Equal("01ab456789-appended", File.ReadAllText(mount.Backed("buffered.txt")));
    }

    [FuseFact]
    public void Rename_OverExistingFile_ReplacesItAndKeepsContent()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true);
        File.WriteAllText(mount.Mounted("a"), "from a");
        File.WriteAllText(mount.Mounted("b"), "from b");

        File.Move(mount.Mounted("a"), mount.Mounted("b"), overwrite: true);

        Assert.False(File.Exists(mount.Mounted("a")));
        Assert.False(File.Exists(mount.Backed("a")));
        Assert.Equal("from a", File.ReadAllText(mount.Mounted("b")));
        Assert.Equal("from a", File.ReadAllText(mount.Backed("b")));

        Directory.CreateDirectory(mount.Mounted("d1", "inner"));
        Directory.CreateDirectory(mount.Mounted("d2", "occupied"));
        Assert.Equal(Errno.ENOTEMPTY, FusePosix.Rename(mount.Mounted("d1"), mount.Mounted("d2")));
        Assert.Equal(Errno.Success, FusePosix.Rename(mount.Mounted("d1"), mount.Mounted("d3")));
        Assert.True(Directory.Exists(mount.Backed("d3", "inner")));
        Assert.Equal(Errno.ENOENT, FusePosix.Rename(mount.Mounted("nope"), mount.Mounted("d4")));
    }

    [FuseFact]
    public void HardLink_BothNamesShareOneInode()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true);
        File.WriteAllText(mount.Mounted("original"), "shared");

        Assert.Equal(Errno.Success, FusePosix.Link(mount.Mounted("original"), mount.Mounted("alias")));
        File.AppendAllText(mount.Mounted("alias"), " content");

        Assert.Equal("shared content", File.ReadAllText(mount.Mounted("original")));
        Assert.Equal(Errno.Success, FusePosix.LStat(mount.Mounted("original"), out Statx original));
        Assert.Equal(Errno.Success, FusePosix.LStat(mount.Mounted("alias"), out Statx alias));
        Assert.Equal(Errno.Success, FusePosix.LStat(mount.Backed("original"), out Statx backing));
        Assert.Equal(2u, original.LinkCount);
        Assert.Equal(original.Inode, alias.Inode);
        Assert.Equal(backing.Inode, original.Inode);
        Assert.Equal(Errno.EEXIST, FusePosix.Link(mount.Mounted("original"), mount.Mounted("alias")));
    }

    [FuseFact]
    public void Symlink_CreatedThroughMount_ResolvesAndKeepsTarget()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true);
        File.WriteAllText(mount.Mounted("target.txt"), "pointed at");

        File.CreateSymbolicLink(mount.Mounted("link"), "target.txt");

        Assert.Equal("target.txt", new FileInfo(mount.Backed("link")).LinkTarget);
        Assert.Equal("target.txt", new FileInfo(mount.Mounted("link")).LinkTarget);
        Assert.Equal("pointed at", File.ReadAllText(mount.Mounted("link")));
        Assert.Equal(Errno.ELOOP, FusePosix.Open(mount.Mounted("link"), Libc.O_RDONLY | Libc.O_NOFOLLOW));
    }

    [FuseFact]
    public void MkdirRmdirUnlink_AnswerPosixErrors()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true);

        Assert.Equal(Errno.Success, FusePosix.Mkdir(mount.Mounted("dir")));
        Assert.True(Directory.Exists(mount.Backed("dir")));
        Assert.Equal(Errno.EEXIST, FusePosix.Mkdir(mount.Mounted("dir")));
        File.WriteAllText(mount.Mounted("dir", "file"), "x");
        Assert.Equal(Errno.ENOTEMPTY, FusePosix.Rmdir(mount.Mounted("dir")));
        Assert.Equal(Errno.ENOTDIR, FusePosix.Rmdir(mount.Mounted("dir", "file")));
        Assert.Equal(Errno.EISDIR, FusePosix.Unlink(mount.Mounted("dir")));
        Assert.Equal(Errno.Success, FusePosix.Unlink(mount.Mounted("dir", "file")));
        Assert.Equal(Errno.ENOENT, FusePosix.Unlink(mount.Mounted("dir", "file")));
        Assert.Equal(Errno.Success, FusePosix.Rmdir(mount.Mounted("dir")));
        Assert.False(Directory.Exists(mount.Backed("dir")));
        Assert.Equal(Errno.ENAMETOOLONG, FusePosix.Mkdir(mount.Mounted(new string('n', 256))));
    }

    [FuseFact]
    public void ChmodChownUtimes_ThroughMount_ReachBackingInode()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true);
        string file = mount.Mounted("file");
        File.WriteAllText(file, "attrs");

        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
        Assert.Equal(Errno.Success, FusePosix.Chown(file, 1234, 5678));
        var mtime = new DateTime(2001, 2, 3, 4, 5, 6, DateTimeKind.Utc);
        File.SetLastWriteTimeUtc(file, mtime);

        Assert.Equal(Errno.Success, FusePosix.LStat(mount.Backed("file"), out Statx backing));
        Assert.Equal(0x1A0u, backing.Mode & 0xFFFu); // 0640
        Assert.Equal(1234u, backing.Uid);
        Assert.Equal(5678u, backing.Gid);
        Assert.Equal(new DateTimeOffset(mtime).ToUnixTimeSeconds(), backing.ModifyTime.Seconds);
        Assert.Equal(mtime, File.GetLastWriteTimeUtc(file));
    }

    [FuseFact]
    public void Xattrs_WithAttrTools_RoundTripAndReachBackingFile()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true);
        string file = mount.Mounted("tagged");
        File.WriteAllText(file, "x");

        Run("setfattr", "-n", "user.color", "-v", "blue", file);
        Run("setfattr", "-n", "user.size", "-v", "large", file);

        Assert.Equal("blue", Run("getfattr", "--only-values", "-n", "user.color", file));
        string dump = Run("getfattr", "-d", file);
        Assert.Contains("user.color=\"blue\"", dump);
        Assert.Contains("user.size=\"large\"", dump);
        Assert.Equal(Convert.ToHexString("blue"u8), FusePosix.Xattrs(mount.Backed("tagged"))["user.color"]);

        Run("setfattr", "-x", "user.color", file);
        Assert.False(FusePosix.Xattrs(mount.Backed("tagged")).ContainsKey("user.color"));
        (int exit, string error) = RunUnchecked("getfattr", "-n", "user.color", file);
        Assert.NotEqual(0, exit);
        Assert.Contains("No such attribute", error);
    }

    [FuseFact]
    public void ReadDir_TenThousandEntries_ListsEveryName()
    {
        const int Count = 10_000;
        using var mount = FuseTestMount.StartPassthrough(writable: true, prepare: backing =>
        {
            Directory.CreateDirectory(Path.Combine(backing, "big"));
            for (int i = 0; i < Count; i++)
            {
                File.WriteAllBytes(Path.Combine(backing, "big", $"entry-{i:D5}-with-a-longer-name"), []);
            }
        });

        string[] listed = Directory.GetFileSystemEntries(mount.Mounted("big")).Select(Path.GetFileName).ToArray()!;
        string[] expected = Directory.GetFileSystemEntries(mount.Backed("big")).Select(Path.GetFileName).ToArray()!;

        Assert.Equal(Count, listed.Length);
        Assert.Equal(expected.Order(StringComparer.Ordinal), listed.Order(StringComparer.Ordinal));
        Assert.Equal(Count, listed.Distinct().Count());
    }

    [FuseFact]
    public void LookupCounts_AfterKernelDropsItsDentries_ReturnToRootOnly()
    {
        const int Count = 500;
        using var mount = FuseTestMount.StartPassthrough(writable: true, prepare: backing =>
        {
            Directory.CreateDirectory(Path.Combine(backing, "dir"));
            for (int i = 0; i < Count; i++)
            {
                File.WriteAllText(Path.Combine(backing, "dir", $"f{i}"), "x");
            }
        });
        var passthrough = (Nydus.Actors.Passthrough.PassthroughFileSystem)mount.FileSystem;

        // READDIRPLUS and LOOKUP both hand out references; stat every name too, and link one twice.
        Assert.Equal(Count, Directory.GetFiles(mount.Mounted("dir")).Length);
        for (int i = 0; i < Count; i++)
        {
            Assert.Equal(Errno.Success, FusePosix.LStat(mount.Mounted("dir", $"f{i}"), out _));
        }

        Assert.Equal(Errno.Success, FusePosix.Link(mount.Mounted("dir", "f0"), mount.Mounted("dir", "f0-again")));
        Assert.True(passthrough.KnownNodes >= Count + 2, $"{passthrough.KnownNodes} nodes known after listing");

        // Dropping dentries and inodes makes the kernel FORGET (or BATCH_FORGET) every node it holds.
        DateTime deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (passthrough.KnownNodes > 1 && DateTime.UtcNow < deadline)
        {
            File.WriteAllText("/proc/sys/vm/drop_caches", "2");
            Thread.Sleep(50);
        }

        Assert.Equal(1, passthrough.KnownNodes);

        // Everything is found again afterwards: nothing was forgotten too early or twice.
        Assert.Equal(Count + 1, Directory.GetFiles(mount.Mounted("dir")).Length);
        Assert.Equal("x", File.ReadAllText(mount.Mounted("dir", "f0-again")));
    }

    [FuseFact]
    public void ConcurrentReadersAndWriters_SeeConsistentData()
    {
        const int Writers = 4;
        const int Readers = 4;
        const int FileSize = 8 * 1024 * 1024;
        byte[] shared = Pattern(FileSize, seed: 99);
        using var mount = FuseTestMount.StartPassthrough(writable: true, workers: 4,
            prepare: backing => File.WriteAllBytes(Path.Combine(backing, "shared.bin"), shared));

        var tasks = new List<Task>();
        for (int w = 0; w < Writers; w++)
        {
            int writer = w;
            tasks.Add(Task.Factory.StartNew(() =>
            {
                byte[] data = Pattern(FileSize, writer);
                using var stream = new FileStream(mount.Mounted($"out-{writer}.bin"), FileMode.Create, FileAccess.Write, FileShare.None, 1);
                for (int offset = 0; offset < data.Length; offset += 64 * 1024)
                {
                    stream.Write(data, offset, 64 * 1024);
                }
            }, TaskCreationOptions.LongRunning));
        }

        for (int r = 0; r < Readers; r++)
        {
            tasks.Add(Task.Factory.StartNew(() =>
            {
                for (int round = 0; round < 3; round++)
                {
                    Assert.True(shared.AsSpan().SequenceEqual(File.ReadAllBytes(mount.Mounted("shared.bin"))));
                }
            }, TaskCreationOptions.LongRunning));
        }

        Assert.True(Task.WaitAll(tasks.ToArray(), TimeSpan.FromMinutes(2)), "readers and writers did not finish in time");
        for (int w = 0; w < Writers; w++)
        {
            Assert.True(Pattern(FileSize, w).AsSpan().SequenceEqual(File.ReadAllBytes(mount.Backed($"out-{w}.bin"))));
            Assert.True(Pattern(FileSize, w).AsSpan().SequenceEqual(File.ReadAllBytes(mount.Mounted($"out-{w}.bin"))));
        }
    }

    [FuseFact]
    public void LargeFile_BeyondFourGiB_ReadsAndWritesAtHighOffsets()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true);
        const long Size = 5L * 1024 * 1024 * 1024;
        const long Offset = 4L * 1024 * 1024 * 1024 + 12345;
        byte[] tail = Encoding.ASCII.GetBytes("beyond four gigabytes");

        using (var stream = new FileStream(mount.Mounted("huge.bin"), FileMode.Create, FileAccess.ReadWrite))
        {
            stream.SetLength(Size);
            stream.Position = Offset;
            stream.Write(tail);
        }

        Assert.Equal(Size, new FileInfo(mount.Mounted("huge.bin")).Length);
        Assert.Equal(Size, new FileInfo(mount.Backed("huge.bin")).Length);
        Assert.Equal(tail, ReadAt(mount.Mounted("huge.bin"), Offset, tail.Length));
        Assert.Equal(tail, ReadAt(mount.Backed("huge.bin"), Offset, tail.Length));
        Assert.Equal(new byte[16], ReadAt(mount.Mounted("huge.bin"), Offset - 16, 16));
    }

    [FuseFact]
    public void CreatingOperations_RunAsTheCaller()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true,
            mountOptions: new FuseMountOptions { ReadOnly = false, AllowOther = true, Source = "passthrough" },
            prepare: backing =>
            {
                Directory.CreateDirectory(Path.Combine(backing, "open"));
                File.SetUnixFileMode(Path.Combine(backing, "open"), (UnixFileMode)0x1FF);
            });

        Run("setpriv", "--reuid=4321", "--regid=4321", "--clear-groups", "touch", mount.Mounted("open", "file"));
        Run("setpriv", "--reuid=4321", "--regid=4321", "--clear-groups", "mkdir", mount.Mounted("open", "dir"));

        Assert.Equal(Errno.Success, FusePosix.LStat(mount.Backed("open", "file"), out Statx file));
        Assert.Equal(Errno.Success, FusePosix.LStat(mount.Backed("open", "dir"), out Statx dir));
        Assert.Equal((4321u, 4321u), (file.Uid, file.Gid));
        Assert.Equal((4321u, 4321u), (dir.Uid, dir.Gid));

        // The same user may not write into a directory it does not own (default_permissions).
        (int exit, _) = RunUnchecked("setpriv", "--reuid=4321", "--regid=4321", "--clear-groups", "touch", mount.Mounted("denied"));
        Assert.NotEqual(0, exit);
        Assert.False(File.Exists(mount.Backed("denied")));
    }

    internal static byte[] Pattern(int size, int seed)
    {
        var data = new byte[size];
        new Random(seed).NextBytes(data);
        return data;
    }

    private static byte[] ReadAt(string path, long offset, int count)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read);
        stream.Position = offset;
        var buffer = new byte[count];
        stream.ReadExactly(buffer);
        return buffer;
    }

    internal static string Run(string tool, params string[] arguments)
    {
        (int exit, string error, string output) = Execute(tool, arguments);
        Assert.True(exit == 0, $"{tool} {string.Join(' ', arguments)} exited {exit}: {error}");
        return output.TrimEnd('\n');
    }

    internal static (int Exit, string Error) RunUnchecked(string tool, params string[] arguments)
    {
        (int exit, string error, _) = Execute(tool, arguments);
        return (exit, error);
    }

    private static (int Exit, string Error, string Output) Execute(string tool, string[] arguments)
    {
        var start = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using Process process = Process.Start(start)!;
        Task<string> output = process.StandardOutput.ReadToEndAsync();
        Task<string> error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            process.Kill();
            throw new TimeoutException($"{tool} did not finish");
        }

        return (process.ExitCode, error.Result, output.Result);
    }
}
