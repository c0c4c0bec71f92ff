namespace Nydus.Actors.Daemon;

/// <summary>
/// The recent failures a user sees at <c>GET /api/v1/daemon/events</c> (backend reads that failed after their
/// retries). Bounded as upstream's is: at most 500 entries and 51,200 bytes of text; the oldest go first.
/// </summary>
public sealed class ErrorEventLog
{
    public const int MaxErrors = 500;
    public const int MaxSize = 51200;

    private readonly object _gate = new();
    private readonly Queue<string> _errors = new();
    private long _totalErrors;
    private long _totalSize;
    private int _bufferedSize;

    public void Record(string message)
    {
        var line = $"{DateTimeOffset.UtcNow:R} - {message}";
        lock (_gate)
        {
            _totalErrors++;
            _totalSize += line.Length;
            _errors.Enqueue(line);
            _bufferedSize += line.Length;
            while (_errors.Count > MaxErrors || (_bufferedSize > MaxSize && _errors.Count > 1))
                _bufferedSize -= _errors.Dequeue().Length;
        }
    }

    public (long TotalErrors, long TotalSize, string[] Errors) Snapshot()
    {
        lock (_gate) return (_totalErrors, _totalSize, _errors.ToArray());
    }
}
