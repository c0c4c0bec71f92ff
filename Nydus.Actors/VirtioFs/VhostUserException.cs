namespace Nydus.Actors.VirtioFs;

/// <summary>The frontend (qemu) sent something this backend cannot accept; the connection is dropped, the daemon keeps running.</summary>
public sealed class VhostUserException(string message) : Exception(message);
