using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Fuse.Abi;
using Nydus.Actors.Fuse.Session;
using Nydus.Actors.Interop;
using Nydus.Actors.Tests.Support;
using Xunit;

namespace Nydus.Actors.Tests.Fuse;

/// <summary>
/// Failover policies on a real connection: a request is read from /dev/fuse and left unanswered (as a daemon
/// killed mid-request leaves it), the policy is applied, workers start again, and the waiting caller is checked.
/// </summary>
public class FuseFailoverDrainTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(15);

    [FuseFact]
    public void Resend_PendingLookup_IsAnsweredByTheNextWorkers()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: false, workers: 2, startWorkers: false,
            prepare: backing => File.WriteAllText(Path.Combine(backing, "late"), "resent content"));
        using var caller = HoldOneRequest(mount, () => File.ReadAllText(mount.Mounted("late")), out FuseOpcode held);

        Assert.Equal(FuseFailoverDrainResult.ResendNotified,
            FuseFailoverDrain.Apply(FuseFailoverPolicy.Resend, mount.Device.Handle, FuseMount.FindConnectionId(mount.MountPoint)));
        mount.Session.Start();

        Assert.True(caller.Task.Wait(Bound), $"the held {held} was not answered after resend");
        Assert.Equal("resent content", caller.Task.Result);
        Assert.True(mount.Session.Dispatcher.Resent >= 1, "no request carried the resend bit");
        Assert.Equal(0, mount.Session.Dispatcher.RefusedResends);
    }

    [FuseFact]
    public void Resend_PendingMkdir_IsRefusedNotRepeated()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: true, workers: 2, startWorkers: false);
        using var caller = HoldOneRequest(mount, () => FusePosix.Mkdir(mount.Mounted("made")), out FuseOpcode held, until: FuseOpcode.Mkdir);

        Assert.Equal(FuseOpcode.Mkdir, held);
        FuseFailoverDrain.Apply(FuseFailoverPolicy.Resend, mount.Device.Handle, FuseMount.FindConnectionId(mount.MountPoint));
        mount.Session.Start();

        Assert.True(caller.Task.Wait(Bound), "the held MKDIR was not answered after resend");
        Assert.Equal(FuseFailoverDrain.RefusedErrno, caller.Task.Result);
        Assert.Equal(1, mount.Session.Dispatcher.RefusedResends);
        Assert.False(Directory.Exists(mount.Backed("made")), "a refused resend must not change the backing tree");
        Assert.Equal(Errno.Success, FusePosix.Mkdir(mount.Mounted("made")));
        Assert.True(Directory.Exists(mount.Backed("made")));
    }

    [FuseFact]
    public void Flush_PendingLookup_AbortsWhereTheKernelHasTheKnobElseLeavesItPending()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: false, workers: 2, startWorkers: false,
            prepare: backing => File.WriteAllText(Path.Combine(backing, "late"), "x"));
        using var caller = HoldOneRequest(mount, () => FusePosix.Open(mount.Mounted("late"), Libc.O_RDONLY), out _);
        uint connection = FuseMount.FindConnectionId(mount.MountPoint)!.Value;
        bool hasKnob = FuseFailoverDrain.ConnectionsDirectories.Any(d => File.Exists(Path.Combine(d, connection.ToString(), "flush")));

        FuseFailoverDrainResult result = FuseFailoverDrain.Apply(FuseFailoverPolicy.Flush, mount.Device.Handle, connection);
        mount.Session.Start();

        Assert.Equal(hasKnob ? FuseFailoverDrainResult.Flushed : FuseFailoverDrainResult.Failed, result);
        if (hasKnob)
        {
            Assert.True(caller.Task.Wait(Bound), "flush did not end the held request");
            Assert.NotEqual(Errno.Success, caller.Task.Result);
        }
        else
        {
            // Mainline kernel: no flush file, so the held request stays pending like with policy none.
            Assert.False(caller.Task.Wait(TimeSpan.FromSeconds(1)), "without the flush knob nobody answers the held request");
        }

        Assert.Equal(0, mount.Session.Dispatcher.Resent);
    }

    [FuseFact]
    public void None_PendingLookup_StaysBlocked()
    {
        using var mount = FuseTestMount.StartPassthrough(writable: false, workers: 2, startWorkers: false,
            prepare: backing => File.WriteAllText(Path.Combine(backing, "late"), "x"));
        using var caller = HoldOneRequest(mount, () => FusePosix.Open(mount.Mounted("late"), Libc.O_RDONLY), out _);

        Assert.Equal(FuseFailoverDrainResult.Nothing,
            FuseFailoverDrain.Apply(FuseFailoverPolicy.None, mount.Device.Handle, FuseMount.FindConnectionId(mount.MountPoint)));
        mount.Session.Start();

        Assert.False(caller.Task.Wait(TimeSpan.FromSeconds(1)), "with policy none the held request has nobody to answer it");
        Assert.Equal(0, mount.Session.Dispatcher.Resent);
    }

    [Fact]
    public void IsSafeToRepeat_ReadsAndAbsoluteWritesYes_NamespaceChangesNo()
    {
        foreach (FuseOpcode safe in new[] { FuseOpcode.Lookup, FuseOpcode.Read, FuseOpcode.ReadDirPlus, FuseOpcode.GetAttr, FuseOpcode.Write, FuseOpcode.SetAttr })
        {
            Assert.True(FuseFailoverDrain.IsSafeToRepeat(safe), safe.ToString());
        }

        foreach (FuseOpcode unsafeOp in new[] { FuseOpcode.Mkdir, FuseOpcode.Create, FuseOpcode.Unlink, FuseOpcode.Rmdir, FuseOpcode.Rename, FuseOpcode.Rename2, FuseOpcode.Link, FuseOpcode.Symlink, FuseOpcode.Mknod, FuseOpcode.RemoveXattr })
        {
            Assert.False(FuseFailoverDrain.IsSafeToRepeat(unsafeOp), unsafeOp.ToString());
        }

        Assert.Throws<ArgumentException>(() => FuseFailoverDrain.Parse("retry"));
        Assert.Equal(FuseFailoverPolicy.Resend, FuseFailoverDrain.Parse("resend"));
    }

    /// <summary>
    /// Lets the workers answer INIT, stops them, starts <paramref name="operation"/> on a thread and reads its
    /// requests off the device without answering, up to the first <paramref name="until"/> (any opcode when null).
    /// The returned caller aborts the connection on dispose, so a caller still blocked always returns.
    /// </summary>
    private static HeldCaller<T> HoldOneRequest<T>(FuseTestMount mount, Func<T> operation, out FuseOpcode held, FuseOpcode? until = null)
    {
        mount.Session.Start();
        Assert.True(Directory.Exists(mount.Mounted(".")));
        mount.Session.Stop();
        Assert.True(mount.Session.Wait(Bound), "workers did not stop");

        uint connection = FuseMount.FindConnectionId(mount.MountPoint) ?? throw new InvalidOperationException("no connection id");
        var caller = new HeldCaller<T>(Task.Factory.StartNew(operation, TaskCreationOptions.LongRunning), connection);
        try
        {
            byte[] buffer = new byte[mount.Session.Dispatcher.RequestBufferSize];
            while (true)
            {
                int length = ReadNextRequest(mount.Device.Handle, buffer);
                var header = MemoryMarshal.Read<FuseInHeader>(buffer);
                if (until is null || header.Opcode == until)
                {
                    held = header.Opcode;
                    return caller;
                }

                // A request before the one we hold: answer it so the caller gets as far as the request we want.
                byte[] reply = new byte[mount.Session.Dispatcher.ReplyBufferSize];
                int replyLength = mount.Session.Dispatcher.Dispatch(buffer.AsSpan(0, length), reply);
                if (replyLength > 0)
                {
                    Libc.WriteFrom(mount.Device.Handle, reply.AsSpan(0, replyLength));
                }
            }
        }
        catch
        {
            caller.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads one request off the device. The session opens it non-blocking, so a read before the caller's request
    /// is queued answers EAGAIN (and a signal may interrupt it): those are retried until <see cref="Bound"/>.
    /// </summary>
    private static int ReadNextRequest(SafeFileHandle device, byte[] buffer)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            nint read = Libc.ReadInto(device, buffer);
            if (read > 0)
            {
                return (int)read;
            }

            Errno errno = read < 0 ? Libc.LastErrno : Errno.Success;
            Assert.True(errno is Errno.EAGAIN or Errno.EINTR, $"read /dev/fuse failed: returned {read}, {errno}");
            if (deadline.Elapsed > Bound)
            {
                throw new TimeoutException("no request reached /dev/fuse");
            }

            Thread.Sleep(5);
        }
    }

    private sealed class HeldCaller<T>(Task<T> task, uint connection) : IDisposable
    {
        public Task<T> Task { get; } = task;

        public void Dispose()
        {
            if (!Task.IsCompleted)
            {
                FuseMount.Abort(connection);
                Task.Wait(Bound);
            }
        }
    }
}
