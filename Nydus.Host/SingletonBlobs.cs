using Akka.Actor;
using Nydus.Actors.Config;
using Nydus.Actors.Storage.Cache.Blobs;
using Serilog;

namespace Nydus.Host;

/// <summary>
/// <c>nydusd singleton --config FILE</c>: the file is any JSON object; its <c>blobs</c> array (upstream's
/// <c>BlobCacheList</c>) is added to the blob cache manager at start, entry by entry, as upstream's
/// <c>add_blob_list</c>: an entry that fails is logged and the rest are added. They are not recorded in the journal
/// (upstream does not record them either): the file adds them again at every start.
/// </summary>
public static class SingletonBlobs
{
    /// <exception cref="ConfigException">The file cannot be read or is not a JSON object (the start fails).</exception>
    public static async Task AddAsync(IActorRef daemon, string configFile, TimeSpan timeout)
    {
        var entries = BlobCacheEntry.ParseList(NydusConfigLoader.ReadConfigText(configFile), configFile);
        int added = 0;
        foreach (var (index, entry, error) in entries)
        {
            if (entry is null)
            {
                Log.Error("Blob entry {Index} of {ConfigFile} is not added: {Error}", index, configFile, error);
                continue;
            }
            var result = await daemon.Ask<BlobCacheResult>(new AddBlobEntry(entry, Record: false), timeout);
            if (result.Succeeded) added++;
            else Log.Error("Blob entry {Index} of {ConfigFile} ({Key}) is not added: {Error}", index, configFile, entry.Key(), result.Message);
        }
        if (entries.Count > 0) Log.Information("Added {Added} of {Count} blob entries from {ConfigFile}", added, entries.Count, configFile);
    }
}
