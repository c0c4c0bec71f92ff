using System.Buffers.Binary;
using System.Security.Cryptography;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.VirtioFs;
using Xunit;

namespace Nydus.Actors.Tests.VirtioFs;

/// <summary>
/// The vhost-user-fs transport of a real <c>nydusd virtiofs</c> process, driven by a test front-end in qemu's place
/// (<see cref="VhostUserTestFrontend"/>) that lays out the descriptor chains itself: FUSE requests over virtqueues
/// (gathered from split descriptors, indirect tables, replies scattered over several), and what a broken or hostile
/// guest sends: descriptors outside guest memory or overflowing it, loops, readable-after-writable, nested or bad
/// indirect tables, a lying available ring, bad vhost-user messages, a front-end gone mid-request. The daemon must
/// answer good requests, refuse bad ones without touching memory outside the guest's, keep serving, and release the
/// guest memory and every descriptor when the front-end goes.
/// </summary>
public sealed class VirtioFsTransportTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Fuse_requests_over_virtqueues_read_the_rafs_v6_fixture()
    {
        await using var daemon = await VirtioFsDaemon.StartWithV6FixtureAsync();
        using var guest = new VhostUserTestFrontend(daemon.Socket, VirtioFsDaemon.NewMemoryPath());
        guest.Start(queues: 2);

        // INIT: the request split over two readable descriptors, the reply over two writable ones.
        byte[] init = FuseWire.Request(FuseWire.Init, 2, 0, FuseWire.InitBody());
        ulong request = guest.Put(init);
        ulong header = guest.Put([], 16), body = guest.Put([], 256);
        guest.WriteDescriptor(1, 0, request, 40, SplitVirtqueue.DescFlagNext, 1);
        guest.WriteDescriptor(1, 1, request + 40, (uint)(init.Length - 40), SplitVirtqueue.DescFlagNext, 2);
        guest.WriteDescriptor(1, 2, header, 16, SplitVirtqueue.DescFlagNext | SplitVirtqueue.DescFlagWrite, 3);
        guest.WriteDescriptor(1, 3, body, 256, SplitVirtqueue.DescFlagWrite, 0);
        guest.Publish(1, 0);
        var used = guest.WaitUsed(1, 1, Wait);
        Assert.Equal(0u, used[0].Head);
        var (length, error, unique) = FuseWire.OutHeader(guest.Guest(header, 16));
        Assert.Equal((0, 2UL), (error, unique));
        Assert.Equal(length, used[0].Length);
        Assert.Equal(7u, BinaryPrimitives.ReadUInt32LittleEndian(guest.Guest(body, 4)));

        // LOOKUP through an indirect table.
        (int lookupError, byte[] entry) = guest.Call(1, FuseWire.Request(FuseWire.Lookup, 4, 1, FuseWire.Name("lib.rs")), 144, indirect: true);
        Assert.Equal(0, lookupError);
        ulong node = BinaryPrimitives.ReadUInt64LittleEndian(entry);
        // fuse_entry_out: nodeid, generation, 2 valid + 2 nsec, then fuse_attr (size at +8).
        Assert.Equal(16931UL, BinaryPrimitives.ReadUInt64LittleEndian(entry.AsSpan(40 + 8)));

        // RAFS answers OPEN with ENOSYS, as upstream's (the kernel then stops sending OPEN and reads with handle 0).
        (int openError, byte[] opened) = guest.Call(1, FuseWire.Request(FuseWire.Open, 6, node, FuseWire.OpenBody()), 16);
        Assert.True(openError is 0 or -38, $"OPEN answered {openError}");
        ulong handle = openError == 0 ? BinaryPrimitives.ReadUInt64LittleEndian(opened) : 0;

        // READ of the whole file, the data scattered over the header's and three more writable descriptors.
        byte[] read = FuseWire.Request(FuseWire.Read, 8, node, FuseWire.ReadBody(handle, 0, 65536));
        ulong readAt = guest.Put(read);
        ulong outHeader = guest.Put([], 16), part1 = guest.Put([], 10000), part2 = guest.Put([], 5000), part3 = guest.Put([], 60000);
        guest.WriteDescriptor(1, 4, readAt, (uint)read.Length, SplitVirtqueue.DescFlagNext, 5);
        guest.WriteDescriptor(1, 5, outHeader, 16, SplitVirtqueue.DescFlagNext | SplitVirtqueue.DescFlagWrite, 6);
        guest.WriteDescriptor(1, 6, part1, 10000, SplitVirtqueue.DescFlagNext | SplitVirtqueue.DescFlagWrite, 7);
        guest.WriteDescriptor(1, 7, part2, 5000, SplitVirtqueue.DescFlagNext | SplitVirtqueue.DescFlagWrite, 8);
        guest.WriteDescriptor(1, 8, part3, 60000, SplitVirtqueue.DescFlagWrite, 0);
        guest.Publish(1, 4);
        used = guest.WaitUsed(1, 1, Wait);
        Assert.Equal((4u, 16u + 16931u), used[0]);
        Assert.Equal(0, FuseWire.OutHeader(guest.Guest(outHeader, 16)).Error);
        byte[] content = [.. guest.Guest(part1, 10000), .. guest.Guest(part2, 5000), .. guest.Guest(part3, 16931 - 15000)];
        // md5 of /lib.rs from the fixture's MANIFEST.md (V6).
        Assert.Equal("4709cf8873e419ecedc7d43fdee4a75f", Convert.ToHexStringLower(MD5.HashData(content)));
        Assert.False(daemon.Process.HasExited);
    }

    [Fact]
    public async Task Malformed_chains_are_returned_unused_and_the_queue_keeps_serving()
    {
        await using var daemon = await VirtioFsDaemon.StartWithV6FixtureAsync();
        using var guest = new VhostUserTestFrontend(daemon.Socket, VirtioFsDaemon.NewMemoryPath());
        guest.Start(queues: 2);
        Assert.Equal(0, guest.Call(1, FuseWire.Request(FuseWire.Init, 2, 0, FuseWire.InitBody()), 256).Error);

        byte[] getattr = FuseWire.Request(FuseWire.GetAttr, 10, 1, FuseWire.GetAttrBody());
        ulong request = guest.Put(getattr);
        ulong reply = guest.Put([], 256);
        const ulong End = VhostUserTestFrontend.GuestBase + VhostUserTestFrontend.MemorySize;
        const ushort Next = SplitVirtqueue.DescFlagNext, Write = SplitVirtqueue.DescFlagWrite, Indirect = SplitVirtqueue.DescFlagIndirect;
        // Each case: the descriptors at 0.. of the queue's table, published from head 0.
        var cases = new (string Name, Action<VhostUserTestFrontend> Lay)[]
        {
            ("beyond guest memory", g => { g.WriteDescriptor(1, 0, End, 64, Next, 1); g.WriteDescriptor(1, 1, reply, 256, Write, 0); }),
            ("below guest memory", g => { g.WriteDescriptor(1, 0, 0x1000, 64, Next, 1); g.WriteDescriptor(1, 1, reply, 256, Write, 0); }),
            ("straddling the end", g => { g.WriteDescriptor(1, 0, request, 40, Next, 1); g.WriteDescriptor(1, 1, End - 8, 256, Write, 0); }),
            ("length overflowing", g => { g.WriteDescriptor(1, 0, End - 8, uint.MaxValue, Next, 1); g.WriteDescriptor(1, 1, reply, 256, Write, 0); }),
            ("address overflowing", g => { g.WriteDescriptor(1, 0, ulong.MaxValue - 4, 64, Next, 1); g.WriteDescriptor(1, 1, reply, 256, Write, 0); }),
            ("a loop", g => { g.WriteDescriptor(1, 0, request, 56, Next, 1); g.WriteDescriptor(1, 1, reply, 256, Write | Next, 1); }),
            ("next out of the table", g => { g.WriteDescriptor(1, 0, request, 56, Next, 999); }),
            ("readable after writable", g => { g.WriteDescriptor(1, 0, reply, 256, Write | Next, 1); g.WriteDescriptor(1, 1, request, 56, 0, 0); }),
            ("indirect table of 17 bytes", g => { g.WriteDescriptor(1, 0, g.Put(new byte[32]), 17, Indirect, 0); }),
            ("indirect table outside memory", g => { g.WriteDescriptor(1, 0, End - 16, 32, Indirect, 0); }),
            ("nested indirect", g =>
            {
                ulong inner = g.Put(new byte[16]);
                ulong outer = g.Put(new byte[16]);
                g.WriteDescriptor(1, 0, inner, 16, Indirect, 0, table: outer);
                g.WriteDescriptor(1, 0, outer, 16, Indirect, 0);
            }),
        };

        foreach (var (name, lay) in cases)
        {
            guest.Guest(reply, 256).Fill(0xAA);
            lay(guest);
            guest.Publish(1, 0);
            var used = guest.WaitUsed(1, 1, Wait);
            Assert.True(used[0] == (0u, 0u), $"{name}: used {used[0]}, expected head 0 returned with length 0");
            // Nothing was written into the reply buffer either.
            Assert.True(guest.Guest(reply, 256).IndexOfAnyExcept((byte)0xAA) < 0, $"{name}: the reply buffer was written");
        }

        // After all that, a good request on the same queue is answered.
        var (error, attr) = guest.Call(1, getattr, 256);
        Assert.Equal(0, error);
        Assert.Equal(0x41EDu, BinaryPrimitives.ReadUInt32LittleEndian(attr.AsSpan(16 + 60))); // S_IFDIR | 0755
        Assert.False(daemon.Process.HasExited);
    }

    [Fact]
    public async Task A_lying_available_ring_stops_only_its_queue_until_the_frontend_resets_it()
    {
        await using var daemon = await VirtioFsDaemon.StartWithV6FixtureAsync();
        using var guest = new VhostUserTestFrontend(daemon.Socket, VirtioFsDaemon.NewMemoryPath());
        guest.Start(queues: 3);
        Assert.Equal(0, guest.Call(1, FuseWire.Request(FuseWire.Init, 2, 0, FuseWire.InitBody()), 256).Error);
        byte[] getattr = FuseWire.Request(FuseWire.GetAttr, 10, 1, FuseWire.GetAttrBody());

        // A head index beyond the table: queue 1 stops; queue 2 still serves.
        guest.Publish(1, 4000);
        Assert.Equal(0, guest.Call(2, getattr, 256).Error);
        ushort usedBefore = guest.UsedIndex(1);
        LayGetAttr(guest, 1, getattr);
        guest.Publish(1, 0);
        await Task.Delay(500);
        Assert.Equal(usedBefore, guest.UsedIndex(1));

        // The front-end resets the queue (GET_VRING_BASE, then set-up again): the waiting request is served.
        uint stoppedAt = guest.StopQueue(1);
        Assert.Equal(2u, stoppedAt); // INIT and the bad entry were taken; the good one was not
        guest.StartQueue(1);
        Assert.Single(guest.WaitUsed(1, 1, Wait));

        // An available index far ahead of the ring (more pending than the ring holds): the same, and nothing is read.
        guest.SetAvailIndex(2, 1000);
        await Task.Delay(500);
        Assert.Equal(0, guest.Call(1, getattr, 256).Error);
        Assert.False(daemon.Process.HasExited);
    }

    [Fact]
    public async Task A_queue_stopped_or_reset_while_its_requests_are_served_loses_no_chain_and_serves_on()
    {
        await using var daemon = await VirtioFsDaemon.StartWithV6FixtureAsync();
        using var guest = new VhostUserTestFrontend(daemon.Socket, VirtioFsDaemon.NewMemoryPath());
        guest.Start(queues: 2);
        Assert.Equal(0, guest.Call(1, FuseWire.Request(FuseWire.Init, 2, 0, FuseWire.InitBody()), 256).Error);
        (int lookupError, byte[] entry) = guest.Call(1, FuseWire.Request(FuseWire.Lookup, 4, 1, FuseWire.Name("lib.rs")), 144);
        Assert.Equal(0, lookupError);
        ulong node = BinaryPrimitives.ReadUInt64LittleEndian(entry);

        // Seven READs of the whole /lib.rs (heads 0, 2, ..., 12 of the 16-entry table), buffers reused every round.
        const int Chains = 7, FileSize = 16931;
        byte[] read = FuseWire.Request(FuseWire.Read, 30, node, FuseWire.ReadBody(0, 0, 65536));
        ulong readAt = guest.Put(read);
        ulong[] replies = Enumerable.Range(0, Chains).Select(_ => guest.Put([], FuseWire.OutHeaderSize + FileSize)).ToArray();
        void PublishReads()
        {
            for (int c = 0; c < Chains; c++)
            {
                guest.Guest(replies[c], FuseWire.OutHeaderSize + FileSize).Clear();
                guest.WriteDescriptor(1, 2 * c, readAt, (uint)read.Length, SplitVirtqueue.DescFlagNext, (ushort)(2 * c + 1));
                guest.WriteDescriptor(1, 2 * c + 1, replies[c], FuseWire.OutHeaderSize + FileSize, SplitVirtqueue.DescFlagWrite, 0);
                guest.Publish(1, (ushort)(2 * c));
            }
        }

        void AssertServed(List<(uint Head, uint Length)> used)
        {
            Assert.Equal(Chains, used.Count);
            foreach (var (head, length) in used)
            {
                Assert.True(head % 2 == 0 && head < 2 * Chains, $"used head {head} was never published");
                Assert.Equal((uint)(FuseWire.OutHeaderSize + FileSize), length);
                Span<byte> reply = guest.Guest(replies[head / 2], FuseWire.OutHeaderSize + FileSize);
                Assert.Equal(0, FuseWire.OutHeader(reply).Error);
                Assert.Equal("4709cf8873e419ecedc7d43fdee4a75f", Convert.ToHexStringLower(MD5.HashData(reply[FuseWire.OutHeaderSize..])));
            }
        }

        // GET_VRING_BASE (qemu's "stop this queue") right behind the kicks races the worker serving them: whatever it
        // took is complete in the used ring (used index = the base it reports), and the rest is served after the restart.
        int caughtBefore = 0;
        for (int round = 0; round < 30; round++)
        {
            ushort usedBefore = guest.UsedIndex(1);
            PublishReads();
            uint stoppedAt = guest.StopQueue(1);
            Assert.Equal((ushort)stoppedAt, guest.UsedIndex(1));
            if ((ushort)(stoppedAt - usedBefore) < Chains) caughtBefore++;
            guest.StartQueue(1);
            AssertServed(guest.WaitUsed(1, Chains, Wait));
        }

        // RESET_OWNER (a device reset) with the chains just kicked: the backend stops its workers, the driver starts
        // from scratch (zeroed rings, new eventfds, INIT), and is served.
        for (int round = 0; round < 5; round++)
        {
            PublishReads();
            guest.ResetAndRestart(queues: 2);
            Assert.Equal(0, guest.Call(1, FuseWire.Request(FuseWire.Init, 2, 0, FuseWire.InitBody()), 256).Error);
            PublishReads();
            AssertServed(guest.WaitUsed(1, Chains, Wait));
        }

        Console.WriteLine($"stop/restart rounds where the stop came before all {Chains} chains were taken: {caughtBefore} of 30");
        Assert.False(daemon.Process.HasExited);
        Assert.DoesNotContain("worker failed", daemon.Process.Output);
    }

    [Fact]
    public async Task Bad_vhost_user_messages_drop_the_connection_and_the_daemon_takes_the_next()
    {
        await using var daemon = await VirtioFsDaemon.StartWithV6FixtureAsync();
        var badOnes = new (string Name, Action<VhostUserTestFrontend> Send)[]
        {
            ("unknown request", g => g.SendRaw(99, VhostUserProtocol.FlagVersion, [])),
            ("wrong version", g => g.SendRaw((uint)VhostUserRequest.GetFeatures, 0x2, [])),
            ("oversized payload", g => g.SendRaw((uint)VhostUserRequest.SetFeatures, VhostUserProtocol.FlagVersion, new byte[8192])),
            ("mem table without its descriptor", g => g.SendRaw((uint)VhostUserRequest.SetMemTable, VhostUserProtocol.FlagVersion, MemTable(1))),
            ("mem table of 0 regions", g => g.SendRaw((uint)VhostUserRequest.SetMemTable, VhostUserProtocol.FlagVersion, MemTable(0))),
            ("queue 200", g => g.SendRaw((uint)VhostUserRequest.SetVringNum, VhostUserProtocol.FlagVersion, [200, 0, 0, 0, 16, 0, 0, 0])),
            ("queue size 1000", g => g.SendRaw((uint)VhostUserRequest.SetVringNum, VhostUserProtocol.FlagVersion, [1, 0, 0, 0, 0xe8, 3, 0, 0])),
            ("short payload", g => g.SendRaw((uint)VhostUserRequest.SetVringBase, VhostUserProtocol.FlagVersion, [1, 0])),
            ("rings outside the memory table", g =>
            {
                g.Start(queues: 1);
                var addr = new byte[40];
                BinaryPrimitives.WriteUInt32LittleEndian(addr, 1);
                BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(8), 0x1000);
                g.Send(VhostUserRequest.SetVringNum, [1, 0, 0, 0, 16, 0, 0, 0]);
                g.Send(VhostUserRequest.SetVringAddr, addr);
                g.Send(VhostUserRequest.SetVringEnable, [1, 0, 0, 0, 1, 0, 0, 0]);
                using var kick = new Microsoft.Win32.SafeHandles.SafeFileHandle(Interop.Libc.EventFd(0, Interop.Libc.EFD_CLOEXEC), ownsHandle: true);
                g.Send(VhostUserRequest.SetVringKick, [1, 0, 0, 0, 0, 0, 0, 0], kick);
            }),
        };

        foreach (var (name, send) in badOnes)
        {
            using var guest = new VhostUserTestFrontend(daemon.Socket, VirtioFsDaemon.NewMemoryPath());
            send(guest);
            Assert.True(guest.IsClosedByBackend(Wait), $"{name}: the backend kept the connection");
        }

        // The next front-end is served as if nothing happened.
        using var good = new VhostUserTestFrontend(daemon.Socket, VirtioFsDaemon.NewMemoryPath());
        good.Start(queues: 2);
        Assert.Equal(0, good.Call(1, FuseWire.Request(FuseWire.Init, 2, 0, FuseWire.InitBody()), 256).Error);
        Assert.False(daemon.Process.HasExited);
    }

    [Fact]
    public async Task A_frontend_gone_mid_request_leaves_no_mapping_and_no_descriptor_behind()
    {
        await using var daemon = await VirtioFsDaemon.StartWithV6FixtureAsync();
        // A first front-end comes and goes, so that what the runtime opens once (on first use) is in the baseline.
        using (var first = new VhostUserTestFrontend(daemon.Socket, VirtioFsDaemon.NewMemoryPath()))
        {
            first.Start(queues: 2);
            Assert.Equal(0, first.Call(1, FuseWire.Request(FuseWire.Init, 2, 0, FuseWire.InitBody()), 256).Error);
        }

        await WaitForAsync(() => daemon.Process.Output.Contains("front-end disconnected"));
        string[] descriptorsBefore = daemon.DescriptorTargets();
        string memory;
        using (var guest = new VhostUserTestFrontend(daemon.Socket, VirtioFsDaemon.NewMemoryPath()))
        {
            memory = guest.MemoryPath;
            guest.Start(queues: 3);
            Assert.Equal(0, guest.Call(1, FuseWire.Request(FuseWire.Init, 2, 0, FuseWire.InitBody()), 256).Error);
            Assert.True(daemon.MappingsOf(memory) > 0, "the guest memory is not mapped by the daemon");
            // Requests in flight on two queues, then the front-end vanishes (as a killed qemu's socket closes).
            for (int q = 1; q <= 2; q++)
            {
                LayGetAttr(guest, q, FuseWire.Request(FuseWire.GetAttr, 20, 1, FuseWire.GetAttrBody()));
                guest.Publish(q, 0);
            }
        }

        await WaitForAsync(() => daemon.MappingsOf(memory) == 0 && daemon.DescriptorTargets().Length <= descriptorsBefore.Length);
        Assert.Equal(0, daemon.MappingsOf(memory));
        string[] after = daemon.DescriptorTargets();
        Assert.True(after.Length <= descriptorsBefore.Length,
            $"{after.Length} descriptors open, {descriptorsBefore.Length} before the front-end came; new: {string.Join(", ", after.Except(descriptorsBefore))}");

        using var next = new VhostUserTestFrontend(daemon.Socket, VirtioFsDaemon.NewMemoryPath());
        next.Start(queues: 2);
        Assert.Equal(0, next.Call(1, FuseWire.Request(FuseWire.Init, 2, 0, FuseWire.InitBody()), 256).Error);
        Assert.Contains("front-end disconnected", daemon.Process.Output);
        Assert.False(daemon.Process.HasExited);
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        DateTime deadline = DateTime.UtcNow + Wait;
        while (!condition() && DateTime.UtcNow < deadline) await Task.Delay(100);
    }

    private static void LayGetAttr(VhostUserTestFrontend guest, int q, byte[] getattr)
    {
        guest.WriteDescriptor(q, 0, guest.Put(getattr), (uint)getattr.Length, SplitVirtqueue.DescFlagNext, 1);
        guest.WriteDescriptor(q, 1, guest.Put([], 256), 256, SplitVirtqueue.DescFlagWrite, 0);
    }

    private static byte[] MemTable(uint regions)
    {
        var table = new byte[8 + 32];
        BinaryPrimitives.WriteUInt32LittleEndian(table, regions);
        BinaryPrimitives.WriteUInt64LittleEndian(table.AsSpan(16), 4096);
        return table;
    }
}
