namespace Nydus.Actors.Interop;

/// <summary>File type bits of st_mode and the matching d_type values (sys/stat.h, dirent.h).</summary>
public static class FileModes
{
    public const uint S_IFMT = 0xF000;
    public const uint S_IFSOCK = 0xC000;
    public const uint S_IFLNK = 0xA000;
    public const uint S_IFREG = 0x8000;
    public const uint S_IFBLK = 0x6000;
    public const uint S_IFDIR = 0x4000;
    public const uint S_IFCHR = 0x2000;
    public const uint S_IFIFO = 0x1000;

    /// <summary>d_type for a mode, as readdir reports it (DT_REG = 8 and so on: the type bits shifted down).</summary>
    public static uint ToDirentType(uint mode) => (mode & S_IFMT) >> 12;

    /// <summary>Linux's new_encode_dev: the 32-bit device number FUSE carries in rdev.</summary>
    public static uint EncodeDevice(uint major, uint minor) =>
        (minor & 0xff) | (major << 8) | ((minor & ~0xffu) << 12);

    public static uint DeviceMajor(uint encoded) => (encoded & 0xfff00) >> 8;

    public static uint DeviceMinor(uint encoded) => (encoded & 0xff) | ((encoded >> 12) & 0xfff00);
}
