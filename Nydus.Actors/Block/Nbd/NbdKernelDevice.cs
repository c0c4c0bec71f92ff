using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using Nydus.Actors.Interop;
using Serilog;

namespace Nydus.Actors.Block.Nbd;

/// <summary>
/// Upstream's kernel NBD mode (<c>nydusd nbd /dev/nbdX</c>, service/src/block_nbd.rs): the kernel's own NBD driver is
/// configured with ioctls and given one end of a socketpair; our end serves the transmission phase (no handshake:
/// the driver was told size and flags directly) with <see cref="NbdConnection"/>'s command loop. NBD_DO_IT blocks
/// while the device is attached, so it runs on a dedicated thread. <see cref="Dispose"/> detaches the device
/// (NBD_DISCONNECT, then NBD_CLEAR_SOCK once NBD_DO_IT returned) and ends the loop; <see cref="Detached"/> completes
/// when the kernel let go for any reason (also `nbd-client -d` from outside).
/// </summary>
public sealed class NbdKernelDevice : IDisposable
{
    private static readonly ILogger Log = Serilog.Log.ForContext<NbdKernelDevice>();

    // linux/nbd.h: _IO(0xab, n).
    private const nuint NbdSetSock = 0xab00;
    private const nuint NbdSetBlockSize = 0xab01;
    private const nuint NbdDoIt = 0xab03;
    private const nuint NbdClearSock = 0xab04;
    private const nuint NbdSetSizeBlocks = 0xab07;
    private const nuint NbdDisconnect = 0xab08;
    private const nuint NbdSetFlags = 0xab0a;

    private readonly SafeFileHandle _device;
    private readonly NbdExport _export;
    private readonly Socket _socket;
    private readonly SafeFileHandle _kernelEnd;
    private readonly NbdExportTable _noExports = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _serving;
    private readonly Thread _doIt;
    private readonly TaskCompletionSource<Errno> _detached = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _disposed;

    private NbdKernelDevice(string path, SafeFileHandle device, NbdExport export, NbdServerOptions options)
    {
        DevicePath = path;
        _device = device;
        _export = export;
        Errno pair = Libc.CreateSocketPair(out SafeFileHandle ours, out _kernelEnd);
        if (pair != Errno.Success) throw new IOException($"socketpair for {path} failed: {pair}");
        _socket = new Socket(new SafeSocketHandle(ours.DangerousGetHandle(), ownsHandle: true));
        ours.SetHandleAsInvalid();
        // The kernel asks up to its max_sectors (often 128-512 KiB) per read: one send per reply (see NbdServer).
        _socket.SendBufferSize = options.SendBufferBytes;

        long blocks = export.Device.Size / BlockAddressSpace.BlockSize;
        Configure(NbdSetBlockSize, BlockAddressSpace.BlockSize, "NBD_SET_BLKSIZE");
        Configure(NbdSetSizeBlocks, (nuint)blocks, "NBD_SET_SIZE_BLOCKS");
        Configure(NbdClearSock, 0, "NBD_CLEAR_SOCK");
        Configure(NbdSetFlags, NbdProtocol.TransHasFlags | NbdProtocol.TransReadOnly, "NBD_SET_FLAGS");
        Configure(NbdSetSock, (nuint)_kernelEnd.DangerousGetHandle(), "NBD_SET_SOCK");

        // Serve before NBD_DO_IT: the kernel reads the partition table as soon as the device is up.
        var connection = new NbdConnection(_socket, _noExports, options);
        _serving = Task.Run(() => connection.RunTransmissionAsync(export, _stopping.Token));
        _doIt = new Thread(RunDevice) { IsBackground = true, Name = "nbd-do-it " + Path.GetFileName(path) };
        _doIt.Start();
    }

    /// <summary>The /dev/nbdX this export is attached to.</summary>
    public string DevicePath { get; }

    /// <summary>Completes when NBD_DO_IT returned (the device was detached or its socket closed), with its errno.</summary>
    public Task<Errno> Detached => _detached.Task;

    /// <summary>
    /// Attaches <paramref name="export"/> to <paramref name="devicePath"/>. Fails with a clear <see cref="IOException"/>
    /// where the kernel has no NBD driver, the path is not an NBD device, or the device is in use.
    /// </summary>
    public static NbdKernelDevice Attach(string devicePath, NbdExport export, NbdServerOptions? options = null)
    {
        if (export.Device.Size % BlockAddressSpace.BlockSize != 0)
        {
            throw new ArgumentException($"the export is {export.Device.Size} bytes, not whole {BlockAddressSpace.BlockSize}-byte blocks");
        }

        if (!File.Exists(devicePath) && !Directory.Exists("/sys/module/nbd"))
        {
            throw new IOException($"{devicePath} does not exist and this kernel has no NBD driver loaded (no /sys/module/nbd): " +
                                  "load it with `modprobe nbd` where the kernel has the module, or serve on --nbd-socket/--nbd-tcp");
        }

        int fd = Libc.Open(PathBytes.FromString(devicePath), Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        if (fd < 0) throw new IOException($"cannot open {devicePath}: {Libc.LastErrno}");
        var device = new SafeFileHandle(fd, ownsHandle: true);
        if (!export.TryLease())
        {
            device.Dispose();
            throw new IOException($"export '{export.Name}' was removed");
        }

        try
        {
            return new NbdKernelDevice(devicePath, device, export, options ?? new NbdServerOptions());
        }
        catch
        {
            export.Release();
            device.Dispose();
            throw;
        }
    }

    private void Configure(nuint request, nuint argument, string name)
    {
        if (Libc.Ioctl(_device, request, argument) == 0) return;
        Errno error = Libc.LastErrno;
        _socket.Dispose();
        _kernelEnd.Dispose();
        throw error switch
        {
            Errno.ENOTTY or Errno.EINVAL when request == NbdSetBlockSize => new IOException($"{DevicePath} is not an NBD device ({name}: {error})"),
            Errno.EBUSY => new IOException($"{DevicePath} is in use (already attached: {name}: {error}); detach it with `nbd-client -d {DevicePath}`"),
            _ => new IOException($"{name} on {DevicePath} failed: {error}"),
        };
    }

    private void RunDevice()
    {
        // Blocks until NBD_DISCONNECT, a dead socket, or `nbd-client -d`; then the socket is cleared so that the
        // device can be attached again.
        Errno result = Libc.Ioctl(_device, NbdDoIt, 0) == 0 ? Errno.Success : Libc.LastErrno;
        Libc.Ioctl(_device, NbdClearSock, 0);
        Log.Information("NBD device {Device} detached ({Result})", DevicePath, result);
        _detached.TrySetResult(result);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        // The kernel sends NBD_CMD_DISC down the socket (our loop ends) and NBD_DO_IT returns.
        if (!_detached.Task.IsCompleted) Libc.Ioctl(_device, NbdDisconnect, 0);
        if (!_detached.Task.Wait(TimeSpan.FromSeconds(10)))
        {
            // A driver waiting on an unanswered request: closing our end fails it and ends NBD_DO_IT.
            Log.Warning("NBD device {Device}: no detach 10 s after NBD_DISCONNECT; closing the socket", DevicePath);
            _socket.Dispose();
            _detached.Task.Wait(TimeSpan.FromSeconds(10));
        }

        _stopping.Cancel();
        _socket.Dispose();
        try
        {
            _serving.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
            // The loop ends with the closed socket's exception: the device is detached either way.
        }

        _kernelEnd.Dispose();
        _device.Dispose();
        _noExports.Dispose();
        _stopping.Dispose();
        _export.Release();
    }
}
