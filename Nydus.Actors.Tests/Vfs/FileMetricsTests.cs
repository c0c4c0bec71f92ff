using System.Runtime.InteropServices;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.Ops;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Interop;
using Nydus.Actors.Passthrough;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Vfs;
using Xunit;
using static Nydus.Actors.Tests.Fuse.FuseDispatcherTests;

namespace Nydus.Actors.Tests.Vfs;

/// <summary>
/// The per-file counters and in-flight slots in process: upstream's range format for the latest read files, what each
/// switch keeps, and the read path through the VFS staying allocation-free with every switch on.
/// </summary>
public class FileMetricsTests
{
    [Fact]
    public void Latest_read_files_are_sorted_ranges_and_the_call_clears_them()
    {
        var stats = new FsIoStats();
        stats.Configure(new FileAccounting(Files: false, AccessPattern: false, LatestReadFiles: true));
        foreach (ulong ino in new ulong[] { 5, 1, 2, 65, 66, 4000, 40001, 40002, 40003, 63, 64 })
            stats.CountRead(0, Errno.Success, 10, ino);
        stats.CountRead(0, Errno.EIO, 0, 7); // a failed read is not a read file (upstream)

        var ranges = stats.Files!.TakeLatestRead();
        Assert.Equal(new ulong[][] { [1, 2], [5], [63, 66], [4000], [40001, 40003] }, ranges);
        Assert.Empty(stats.Files.TakeLatestRead());
        Assert.Empty(stats.Files.FilesBody());
        Assert.Empty(stats.Files.PatternBody());
    }

    [Fact]
    public void Switches_off_keep_nothing_and_a_reconfigure_keeps_the_tables_that_stay_on()
    {
        var stats = new FsIoStats();
        stats.CountRead(0, Errno.Success, 100, 9);
        Assert.Null(stats.Files);
        var body = stats.ToBody("/x");
        Assert.Equal(false, body["files_account_enabled"]);

        stats.Configure(new FileAccounting(Files: true, AccessPattern: true, LatestReadFiles: false));
        stats.CountRead(0, Errno.Success, 100, 9);
        stats.Count(FsIoStats.Getattr, 0, Errno.Success, 9);
        stats.Count(FsIoStats.Lookup, 0, Errno.ENOENT, 9);
        var files = stats.Files!.FilesBody();
        var entry = files[9];
        Assert.Equal(3L, entry["total_fops"]);
        Assert.Equal(100L, entry["data_read"]);
        Assert.Equal(1L, ((long[])entry["fop_hits"])[FsIoStats.Read]);
        Assert.Equal(1L, ((long[])entry["fop_errors"])[FsIoStats.Lookup]);
        Assert.Equal(1L, ((long[])entry["block_count_read"])[0]);
        var pattern = Assert.Single(stats.Files.PatternBody());
        Assert.Equal(9UL, pattern["ino"]);
        Assert.Equal(1L, pattern["nr_read"]);

        // A remount to a config with only files on keeps the file counters and drops the patterns.
        stats.Configure(new FileAccounting(Files: true, AccessPattern: false, LatestReadFiles: false));
        Assert.Equal(100L, stats.Files!.FilesBody()[9]["data_read"]);
        Assert.Empty(stats.Files.PatternBody());
        body = stats.ToBody("/x");
        Assert.Equal(true, body["files_account_enabled"]);
        Assert.Equal(false, body["access_pattern_enabled"]);
        stats.Configure(default);
        Assert.Null(stats.Files);
    }

    [Fact]
    public void Inflight_slots_show_what_each_worker_began_and_forget_it_at_the_end()
    {
        var inflight = new FuseInflight(3);
        Assert.Empty(inflight.Snapshot());
        long before = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        inflight.Begin(1, Request(FuseOpcode.Read, unique: 42, nodeId: 7, ReadRequest(0, 0, 4096)));
        var op = Assert.Single(inflight.Snapshot());
        Assert.Equal(new FuseInflightOp(7, (uint)FuseOpcode.Read, 42, op.TimestampSecs), op);
        Assert.InRange(op.TimestampSecs, before - 1, DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 1);
        inflight.End(1);
        Assert.Empty(inflight.Snapshot());
    }

    [Fact]
    public void Read_and_getattr_through_the_VFS_with_every_metrics_switch_on_allocate_nothing_per_request()
    {
        string root = Path.Combine(Path.GetTempPath(), "nydus-metrics-alloc-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(root, "m"));
        File.WriteAllBytes(Path.Combine(root, "m", "data"), new byte[256 * 1024]);
        try
        {
            using var vfs = new VirtualFileSystem();
            var passthrough = new PassthroughFileSystem(Path.Combine(root, "m"), writable: false);
            vfs.Mount("/m", passthrough);
            vfs.StatsOf("/m")!.Configure(new FileAccounting(Files: true, AccessPattern: true, LatestReadFiles: true));
            var dispatcher = new FuseDispatcher(vfs, FuseInitOptions.ReadOnlyImage);
            var inflight = new FuseInflight(1);
            byte[] reply = GC.AllocateUninitializedArray<byte>(dispatcher.ReplyBufferSize, pinned: true);

            dispatcher.Dispatch(Request(FuseOpcode.Lookup, 1, 1, Name("m")), reply);
            ulong dir = MemoryMarshal.Read<FuseEntryOut>(reply.AsSpan(16)).NodeId;
            dispatcher.Dispatch(Request(FuseOpcode.Lookup, 2, dir, Name("data")), reply);
            ulong node = MemoryMarshal.Read<FuseEntryOut>(reply.AsSpan(16)).NodeId;
            dispatcher.Dispatch(Request(FuseOpcode.Open, 3, node, Bytes(0UL)), reply);
            ulong handle = MemoryMarshal.Read<FuseOpenOut>(reply.AsSpan(16)).Fh;

            byte[] read = Request(FuseOpcode.Read, 4, node, ReadRequest(handle, offset: 4096, size: 128 * 1024));
            byte[] getattr = Request(FuseOpcode.GetAttr, 5, node, Bytes(new FuseGetAttrIn()));
            void Serve(byte[] request)
            {
                inflight.Begin(0, request);
                dispatcher.Dispatch(request, reply);
                inflight.End(0);
            }
            for (int i = 0; i < 200; i++)
            {
                Serve(read);
                Serve(getattr);
            }

            int reads = 200;
            long allocated = Allocations.FewestBytesAllocated(() =>
            {
                for (int i = 0; i < 1000; i++)
                {
                    Serve(read);
                    Serve(getattr);
                }
                reads += 1000;
            });
            Assert.Equal(0, allocated);

            var files = vfs.StatsOf("/m")!.Files!;
            var counters = files.FilesBody()[node & VirtualFileSystem.InodeMask];
            Assert.Equal(reads * 128L * 1024, counters["data_read"]);
            Assert.Equal((long)reads, Assert.Single(files.PatternBody())["nr_read"]);
            Assert.Equal(new ulong[][] { [node & VirtualFileSystem.InodeMask] }, files.TakeLatestRead());
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static byte[] ReadRequest(ulong handle, ulong offset, uint size)
    {
        byte[] raw = new byte[40];
        BitConverter.TryWriteBytes(raw.AsSpan(0), handle);
        BitConverter.TryWriteBytes(raw.AsSpan(8), offset);
        BitConverter.TryWriteBytes(raw.AsSpan(16), size);
        return raw;
    }
}
