using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// Builds a source tree in a unique temp directory that exercises every inode type and layout corner an image
/// reader must handle, and deletes it on dispose.
/// </summary>
public sealed class TreeBuilder : IDisposable
{
    public TreeBuilder()
    {
        WorkDir = Path.Combine(Path.GetTempPath(), "nydus-rafs-" + Guid.NewGuid().ToString("N"));
        Root = Path.Combine(WorkDir, "src");
        Directory.CreateDirectory(Root);
    }

    public string WorkDir { get; }

    public string Root { get; }

    /// <summary>The full corner-case tree described in the rafs brief.</summary>
    public TreeBuilder BuildRich(bool hugeDirectory = true)
    {
        var random = new Random(1234);
        File.WriteAllText(P("hello.txt"), "hello, erofs\n");
        File.WriteAllBytes(P("empty"), Array.Empty<byte>());
        foreach (int size in new[] { 1, 4095, 4096, 4097, 8191, 8192, 65536 + 7, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, (3 << 20) + 5 })
        {
            var content = new byte[size];
            random.NextBytes(content);
            File.WriteAllBytes(P($"sized/{size}"), content);
        }

        // Sparse files: a hole at the head, in the middle, at the tail, and a file that is all hole.
        WriteSparse("sparse/head-hole", 2 << 20, (2 << 20) - 100, 100);
        WriteSparse("sparse/mid-hole", 3 << 20, 0, 5000, (2 << 20) + 3, 4096);
        WriteSparse("sparse/tail-hole", (1 << 20) + 4097, 0, 4097);
        WriteSparse("sparse/all-hole", 5 << 20);
        // Identical chunks (dedup) in one file and across files.
        var block = new byte[4096];
        random.NextBytes(block);
        File.WriteAllBytes(P("dedup/a"), [.. block, .. block, .. block]);
        File.WriteAllBytes(P("dedup/b"), block);

        File.WriteAllText(P("links/original"), "linked content\n");
        Link("links/original", "links/second");
        Link("links/original", "other-dir-link");
        File.CreateSymbolicLink(P("links/relative"), "original");
        File.CreateSymbolicLink(P("links/dangling"), "/does/not/exist");
        File.CreateSymbolicLink(P("links/long-target"), new string('t', 1000));
        File.CreateSymbolicLink(P("links/to-dir"), "../sized");
        File.CreateSymbolicLink(P("links/root"), "/");

        string longName = new string('n', 254);
        File.WriteAllText(P(longName), "long name\n");
        File.WriteAllText(P("names/ space"), "s");
        File.WriteAllText(P("names/!bang"), "b");
        File.WriteAllText(P("names/-dash"), "d");
        File.WriteAllText(P("names/.hidden"), "h");
        File.WriteAllText(P("names/ünïcödé"), "u");

        string deep = Root;
        for (int i = 0; i < 40; i++)
        {
            deep = Path.Combine(deep, $"level{i:D2}");
        }

        Directory.CreateDirectory(deep);
        File.WriteAllText(Path.Combine(deep, "bottom"), "deep\n");

        if (hugeDirectory)
        {
            Directory.CreateDirectory(P("huge"));
            for (int i = 0; i < 5000; i++)
            {
                File.WriteAllBytes(P($"huge/entry-{i:D5}-{new string('x', i % 40)}"), i % 97 == 0 ? [(byte)i] : []);
            }
        }

        Directory.CreateDirectory(P("dev"));
        TreeNative.Check(TreeNative.mknod(P("dev/null"), 0x2000 | 0x1B6, TreeNative.MakeDev(1, 3)), "mknod chr");
        TreeNative.Check(TreeNative.mknod(P("dev/loop0"), 0x6000 | 0x1B0, TreeNative.MakeDev(7, 0)), "mknod blk");
        TreeNative.Check(TreeNative.mknod(P("dev/bigminor"), 0x2000 | 0x180, TreeNative.MakeDev(250, 300)), "mknod chr big");
        TreeNative.Check(TreeNative.mknod(P("dev/fifo"), 0x1000 | 0x1A4, 0), "mknod fifo");
        using (var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            socket.Bind(new UnixDomainSocketEndPoint(P("dev/socket")));
        }

        File.WriteAllText(P("modes/setuid"), "#!/bin/sh\n");
        File.SetUnixFileMode(P("modes/setuid"), UnixFileMode.SetUser | UnixFileMode.UserRead | UnixFileMode.UserWrite
            | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
        File.WriteAllText(P("modes/none"), "secret");
        File.SetUnixFileMode(P("modes/none"), UnixFileMode.None);
        Directory.CreateDirectory(P("modes/sticky"));
        File.SetUnixFileMode(P("modes/sticky"), (UnixFileMode)0x3FF | UnixFileMode.StickyBit);
        File.WriteAllText(P("owners/u1000"), "a");
        TreeNative.Check(TreeNative.lchown(P("owners/u1000"), 1000, 1000), "lchown");
        File.WriteAllText(P("owners/u70000"), "b");
        TreeNative.Check(TreeNative.lchown(P("owners/u70000"), 70000, 70001), "lchown");
        TreeNative.Check(TreeNative.lchown(P("links/dangling"), 1234, 5678), "lchown symlink");

        File.WriteAllText(P("xattrs/one"), "x");
        SetXattr("xattrs/one", "user.greeting", "hello");
        SetXattr("xattrs/one", "trusted.secret", "t-value");
        SetXattr("xattrs/one", "user.empty", "");
        SetXattr("xattrs/one", "user.long", new string('v', 1000));
        for (int i = 0; i < 4; i++)
        {
            // The same xattr on more than two inodes goes to mkfs.erofs's shared xattr area.
            File.WriteAllText(P($"xattrs/shared{i}"), i.ToString());
            SetXattr($"xattrs/shared{i}", "user.shared", "same-value");
            SetXattr($"xattrs/shared{i}", "user.own", $"own-{i}");
        }

        Directory.CreateDirectory(P("xattrs/dir"));
        SetXattr("xattrs/dir", "user.on-dir", "d");

        // Fixed, distinct mtimes (with nanoseconds at 100 ns resolution) so mtime checks mean something.
        var baseTime = new DateTime(2023, 5, 6, 7, 8, 9, DateTimeKind.Utc);
        int n = 0;
        // Never follow symlinks here: the tree holds a link to "/", and recursing through it would touch the host.
        var noLinks = new EnumerationOptions
        {
            RecurseSubdirectories = true,
            AttributesToSkip = FileAttributes.ReparsePoint,
            IgnoreInaccessible = false,
        };
        foreach (string path in Directory.EnumerateFileSystemEntries(Root, "*", noLinks))
        {
            if (!path.Contains("/huge/"))
            {
                File.SetLastWriteTimeUtc(path, baseTime.AddTicks(n++ * 12_345_678_901));
            }
        }

        return this;
    }

    public string P(string relative)
    {
        string full = Path.Combine(Root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        return full;
    }

    /// <summary>Runs an external tool with a deadline; throws with its output when it fails.</summary>
    public static string Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using Process process = Process.Start(psi)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(120_000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in 120 s");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {process.ExitCode}: {stderr.Result}");
        }

        return stdout.Result;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(WorkDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private void WriteSparse(string relative, long size, params long[] dataRanges)
    {
        using var stream = new FileStream(P(relative), FileMode.Create, FileAccess.Write);
        stream.SetLength(size);
        for (int i = 0; i + 1 < dataRanges.Length; i += 2)
        {
            stream.Position = dataRanges[i];
            var bytes = new byte[dataRanges[i + 1]];
            new Random((int)dataRanges[i]).NextBytes(bytes);
            stream.Write(bytes);
        }
    }

    private void Link(string existing, string newName) =>
        TreeNative.Check(TreeNative.link(P(existing), P(newName)), $"link {newName}");

    private void SetXattr(string relative, string name, string value)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(value);
        TreeNative.Check(TreeNative.lsetxattr(P(relative), name, bytes, (nuint)bytes.Length, 0), $"setxattr {name}");
    }
}
