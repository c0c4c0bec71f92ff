using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Nydus.Actors.Upgrade;

/// <summary>
/// The daemon side of upstream's supervisor socket (<c>--supervisor</c>): nydusd connects in both directions.
/// <see cref="Save"/> is <c>PUT /api/v1/daemon/fuse/sendfd</c>; <see cref="Restore"/> is the takeover's receive.
/// One connection per call; every step is bounded by <see cref="Timeout"/> so neither can hang.
/// </summary>
public sealed class SupervisorClient(string socketPath, TimeSpan timeout)
{
    public string SocketPath { get; } = socketPath;

    public TimeSpan Timeout { get; } = timeout;

    /// <summary>Sends the state bytes with the descriptor (the supervisor replaces what it stored).</summary>
    public void Save(ReadOnlySpan<byte> state, SafeHandle descriptor)
    {
        using var socket = DescriptorTransfer.Connect(SocketPath, Timeout);
        DescriptorTransfer.Send(socket, state, descriptor, Timeout);
    }

    /// <summary>Receives the stored state bytes and descriptor (the supervisor keeps its copy).</summary>
    public (byte[] State, SafeFileHandle Descriptor) Restore()
    {
        using var socket = DescriptorTransfer.Connect(SocketPath, Timeout);
        return DescriptorTransfer.Receive(socket, Timeout);
    }
}
