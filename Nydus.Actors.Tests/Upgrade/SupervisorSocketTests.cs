using System.Diagnostics;
using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Support;
using Nydus.Actors.Upgrade;
using Xunit;

namespace Nydus.Actors.Tests.Upgrade;

/// <summary>Real Unix sockets and SCM_RIGHTS between the daemon-side client and the supervisor server.</summary>
public sealed class SupervisorSocketTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);
    private const int SEEK_SET = 0, SEEK_CUR = 1;
    private readonly TempDir _dir = new("supervisor");

    public void Dispose() => _dir.Dispose();

    private SafeFileHandle OpenScratch(string name) =>
        File.OpenHandle(_dir.Combine(name), FileMode.Create, FileAccess.ReadWrite);

    private static async Task Within(Task task) =>
        Assert.Same(task, await Task.WhenAny(task, Task.Delay(Timeout)));

    [Fact]
    public async Task Save_then_restore_returns_the_same_bytes_and_the_same_open_file_description()
    {
        using var server = new SupervisorServer(_dir.Combine("sup.sock"), Timeout);
        var client = new SupervisorClient(server.Path, Timeout);
        // More than the 32 KiB first read, so the remainder path (write rest, read to EOF) is exercised.
        var state = new byte[100_000];
        new Random(6).NextBytes(state);
        using var original = OpenScratch("conn");

        var saved = server.NextSave;
        client.Save(state, original);
        await Within(saved);
        Assert.Equal(1, server.Saves);
        Assert.Equal(state, server.State);

        var served = server.ServeNextRestore();
        var (restored, fd) = client.Restore();
        using (fd)
        {
            await Within(served);
            Assert.Equal(state, restored);
            Assert.NotEqual(original.DangerousGetHandle(), fd.DangerousGetHandle());
            // A shared open file description shares the file offset; a second open() would not.
            Assert.Equal(4242, Libc.LSeek(fd, 4242, SEEK_SET));
            Assert.Equal(4242, Libc.LSeek(original, 0, SEEK_CUR));
        }
    }

    [Fact]
    public async Task Supervisor_keeps_its_copy_and_a_later_save_replaces_it()
    {
        using var server = new SupervisorServer(_dir.Combine("sup.sock"), Timeout);
        var client = new SupervisorClient(server.Path, Timeout);
        using (var first = OpenScratch("first"))
        {
            var saved = server.NextSave;
            client.Save("one"u8, first);
            await Within(saved);
        }

        for (int i = 0; i < 2; i++)
        {
            var served = server.ServeNextRestore();
            var (bytes, fd) = client.Restore();
            fd.Dispose();
            await Within(served);
            Assert.Equal("one"u8.ToArray(), bytes);
        }

        using var second = OpenScratch("second");
        var next = server.NextSave;
        client.Save("two"u8, second);
        await Within(next);
        var again = server.ServeNextRestore();
        var (latest, latestFd) = client.Restore();
        using (latestFd)
        {
            await Within(again);
            Assert.Equal("two"u8.ToArray(), latest);
            Libc.LSeek(latestFd, 77, SEEK_SET);
            Assert.Equal(77, Libc.LSeek(second, 0, SEEK_CUR));
        }

        Assert.Equal(2, server.Saves);
    }

    [Fact]
    public void Restore_without_stored_state_fails_with_NoEnoughFds()
    {
        using var server = new SupervisorServer(_dir.Combine("sup.sock"), Timeout);
        var served = server.ServeNextRestore();
        var error = Assert.Throws<UpgradeException>(() => new SupervisorClient(server.Path, Timeout).Restore());
        Assert.Equal(UpgradeErrorKind.NoEnoughFds, error.Kind);
        var refused = Assert.Throws<AggregateException>(() => served.Wait(Timeout));
        Assert.Equal(UpgradeErrorKind.NoEnoughFds, Assert.IsType<UpgradeException>(refused.InnerException).Kind);
    }

    [Fact]
    public void Save_without_a_descriptor_fails_with_NoEnoughFds_and_stores_nothing()
    {
        using var server = new SupervisorServer(_dir.Combine("sup.sock"), Timeout);
        var closed = OpenScratch("gone");
        closed.Dispose();
        var error = Assert.Throws<UpgradeException>(() => new SupervisorClient(server.Path, Timeout).Save("x"u8, closed));
        Assert.Equal(UpgradeErrorKind.NoEnoughFds, error.Kind);
        Assert.False(server.HasState);
    }

    [Fact]
    public void Missing_supervisor_socket_is_a_clear_socket_error()
    {
        var path = _dir.Combine("nobody.sock");
        var error = Assert.Throws<UpgradeException>(() => new SupervisorClient(path, Timeout).Restore());
        Assert.Equal(UpgradeErrorKind.Socket, error.Kind);
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void Supervisor_that_never_answers_times_out_within_the_bound()
    {
        // Bound and listening but never accepting or writing: the kernel completes connect, recvmsg waits.
        var path = _dir.Combine("silent.sock");
        using var silent = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        silent.Bind(new UnixDomainSocketEndPoint(path));
        silent.Listen(1);
        var watch = Stopwatch.StartNew();
        var error = Assert.Throws<UpgradeException>(() => new SupervisorClient(path, TimeSpan.FromMilliseconds(300)).Restore());
        Assert.Equal(UpgradeErrorKind.Timeout, error.Kind);
        Assert.True(watch.Elapsed < Timeout, $"restore took {watch.Elapsed}");
    }

    [Fact]
    public async Task Supervisor_rejects_a_save_without_a_descriptor_and_keeps_the_previous_state()
    {
        using var server = new SupervisorServer(_dir.Combine("sup.sock"), Timeout);
        using (var fd = OpenScratch("kept"))
        {
            var saved = server.NextSave;
            new SupervisorClient(server.Path, Timeout).Save("kept"u8, fd);
            await Within(saved);
        }

        using (var raw = DescriptorTransfer.Connect(server.Path, Timeout))
        {
            raw.Send("no fd here"u8);
            raw.Shutdown(SocketShutdown.Send);
            // The server closes after reading to EOF.
            raw.ReceiveTimeout = 5000;
            Assert.Equal(0, raw.Receive(new byte[16]));
        }

        Assert.Equal("kept"u8.ToArray(), server.State);
        Assert.Equal(1, server.Saves);
        var error = Assert.IsType<UpgradeException>(server.LastError);
        Assert.Equal(UpgradeErrorKind.NoEnoughFds, error.Kind);
    }
}
