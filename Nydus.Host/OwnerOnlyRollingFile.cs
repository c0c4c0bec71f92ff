using System.Globalization;
using System.Text.RegularExpressions;
using Serilog;
using Serilog.Core;
using Serilog.Events;

namespace Nydus.Host;

/// <summary>
/// The <c>--log-file</c> sink: Serilog's shared file sink on the current file, rolled here at
/// <c>--log-rotation-size</c> to <c>name_001.ext</c>, <c>name_002.ext</c>, ... (Serilog's own names), keeping the
/// newest <see cref="NydusdLogging.RolledFilesKept"/> rolled files. Every file is created here, owner-only (0600),
/// before the sink opens it: Serilog creates the files it rolls to with the process umask (usually 0644), and its
/// shared mode, which an upgrade's two daemons writing one file need, takes no lifecycle hooks to fix that.
/// Whether to roll is checked after each event (one stat; logging is off the FUSE data path).
/// </summary>
internal sealed class OwnerOnlyRollingFile : ILogEventSink, IDisposable
{
    /// <summary>Log files hold mount sources, paths and registry hosts: for the daemon's user only, like its state.</summary>
    public const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private readonly object _gate = new();
    private readonly string _directory, _stem, _extension;
    private readonly long? _rollAtBytes;
    private readonly Func<string, Logger> _open;
    private string _current;
    private int _sequence;
    private Logger _sink;

    /// <param name="path">The full path of the log file.</param>
    /// <param name="rollAtBytes">Roll once the current file reaches this size; null never.</param>
    /// <param name="open">Opens Serilog's file sink on a path (which exists already).</param>
    public OwnerOnlyRollingFile(string path, long? rollAtBytes, Func<string, Logger> open)
    {
        _directory = Path.GetDirectoryName(path)!;
        _stem = Path.GetFileNameWithoutExtension(path);
        _extension = Path.GetExtension(path);
        _rollAtBytes = rollAtBytes;
        _open = open;
        // As Serilog: a restart goes on writing the newest file.
        _sequence = rollAtBytes is null ? 0 : RolledFiles().Select(f => f.Sequence).DefaultIfEmpty(0).Max();
        _current = PathOf(_sequence);
        CreateOwnerOnly(_current);
        _sink = _open(_current);
    }

    /// <summary>Creates <paramref name="path"/> 0600 if it does not exist (an existing file keeps its mode: an
    /// operator may have chosen it). open(2) applies the umask too, which can only take bits away.</summary>
    public static void CreateOwnerOnly(string path)
    {
        using var _ = new FileStream(path, new FileStreamOptions
        {
            Mode = System.IO.FileMode.OpenOrCreate,
            Access = FileAccess.Write,
            Share = FileShare.ReadWrite | FileShare.Delete,
            UnixCreateMode = FileMode,
        });
    }

    public void Emit(LogEvent logEvent)
    {
        lock (_gate)
        {
            _sink.Write(logEvent);
            if (_rollAtBytes is { } limit && new FileInfo(_current).Length >= limit) Roll();
        }
    }

    private void Roll()
    {
        _sink.Dispose();
        // Another daemon sharing the file may have rolled already: go past what exists.
        _sequence = Math.Max(_sequence, RolledFiles().Select(f => f.Sequence).DefaultIfEmpty(0).Max()) + 1;
        _current = PathOf(_sequence);
        CreateOwnerOnly(_current);
        _sink = _open(_current);
        // The newest RolledFilesKept files besides the current one stay.
        foreach (var (file, _) in RolledFiles().OrderByDescending(f => f.Sequence).Skip(NydusdLogging.RolledFilesKept + 1))
        {
            try
            {
                File.Delete(file);
            }
            catch (IOException)
            {
                // Removed by the other daemon sharing it.
            }
        }
    }

    private string PathOf(int sequence) =>
        Path.Combine(_directory, sequence == 0 ? _stem + _extension : $"{_stem}_{sequence.ToString("000", CultureInfo.InvariantCulture)}{_extension}");

    /// <summary>The log file and its rolled files, with their sequence numbers (0 for the first).</summary>
    private IEnumerable<(string File, int Sequence)> RolledFiles()
    {
        var pattern = new Regex("^" + Regex.Escape(_stem) + @"(?:_(\d{3,}))?" + Regex.Escape(_extension) + "$", RegexOptions.CultureInvariant);
        foreach (var file in Directory.EnumerateFiles(_directory))
        {
            var match = pattern.Match(Path.GetFileName(file));
            if (!match.Success) continue;
            yield return (file, match.Groups[1].Success ? int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : 0);
        }
    }

    public void Dispose()
    {
        lock (_gate) _sink.Dispose();
    }
}
