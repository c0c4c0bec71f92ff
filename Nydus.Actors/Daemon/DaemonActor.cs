using System.Collections.Immutable;
using Akka.Actor;
using Nydus.Actors.Config;
using Akka.Event;
using Nydus.Actors.Daemon.Block;
using Nydus.Actors.Daemon.Mounts;
using Nydus.Actors.Daemon.Persistence;
using Nydus.Actors.Storage.Cache;
using Nydus.Actors.Storage.Cache.Blobs;

namespace Nydus.Actors.Daemon;

/// <summary>
/// The top of a daemon's actor tree. Owns upstream's state machine (Init, Ready, Running, Die) and the reported
/// state, serializes inputs (one at a time, as upstream's FSM thread does), and runs each committed transition's
/// action through the service child. Children: the journal (durable state), the filesystem service (mount table),
/// the blob cache, the block service (NBD exports), and the service (FUSE session) when the daemon kind has one.
/// </summary>
public sealed class DaemonActor : ReceiveActor, IWithUnboundedStash, IWithTimers
{
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly DaemonSettings _settings;
    private readonly IActorRef? _service;
    private readonly IActorRef _journal;
    private readonly IActorRef _fsService;
    private readonly IActorRef _blockService;
    private readonly IActorRef _blobCache;

    private DaemonFsmState _fsm = DaemonFsmState.Init;
    // Between RestoreMounts and its answer: takeover and start wait (stashed) until the table is mounted again.
    private bool _restoringMounts;
    private bool _startRecorded;
    private bool _journalStopped;
    private DaemonState _reported = DaemonState.Init;
    private ImmutableSortedDictionary<string, MountedBackend> _backends = ImmutableSortedDictionary<string, MountedBackend>.Empty;
    private ImmutableArray<MountRecord> _mountRecords = [];

    // The sequence being worked through (one input, or a trigger's several), and who waits for its result.
    private readonly Queue<DaemonInput> _pending = new();
    private IActorRef _replyTo = ActorRefs.Nobody;
    private DaemonAction _runningAction;
    private int _actionGeneration;
    // The takeover being worked on was asked with ?failover=true.
    private bool _failoverTakeover;
    // An exit is under way: once STOPPED, the mount is left to a successor (see DaemonOutcome.LeftToSuccessor).
    private bool _exiting;
    // The sequence's steps and their cold code, logged with its answer (issue 20: where a takeover's, a start's and an
    // exit's time goes inside the daemon).
    private Fuse.Session.HandoffStepTimer? _sequenceTimer;
    private string _sequenceName = "";

    public IStash Stash { get; set; } = null!;
    public ITimerScheduler Timers { get; set; } = null!;

    public DaemonActor(DaemonSettings settings)
    {
        _settings = settings;
        _journal = Context.ActorOf(DaemonJournalGuard.Props(settings.PersistenceId, settings.Id, !settings.DeferStartRecord), "journal");
        Context.Watch(_journal);
        _fsService = Context.ActorOf(FsServiceActor.Props(settings.Vfs, _journal, settings.Metrics, settings.Caches, settings.DeferStartRecord,
            readModel: settings.ReadModel), "fs-service");
        _blobCache = Context.ActorOf(BlobCacheActor.Props(settings.CacheLimits, settings.Caches, setup: settings.Bootstraps is null ? null
            : new BlobCacheManagerSetup(_journal, settings.Bootstraps, settings.DeferStartRecord, JournalFailures.IsDiskFull)), "blob-cache");
        _blockService = Context.ActorOf(BlockServiceActor.Props(settings.PersistenceId + "-block", settings.Caches, settings.DeferStartRecord), "block-service");
        if (settings.ServiceProps is not null)
        {
            _service = Context.ActorOf(settings.ServiceProps, "service");
            Context.Watch(_service);
        }
        Idle();
    }

    public static Props Props(DaemonSettings settings) => Akka.Actor.Props.Create(() => new DaemonActor(settings));

    protected override SupervisorStrategy SupervisorStrategy() => DaemonSupervision.Strategy;

    private void Idle()
    {
        // A singleton without --fscache has no descriptor to take over: refuse before the machine moves, rather than
        // report READY with nothing restored. (An fscache singleton's service takes over the cachefiles fd.)
        Receive<DaemonCommand>(c => c.Input == DaemonInput.Takeover && _service is null, _ =>
            Sender.Tell(new DaemonCommandResult(_reported,
                new DaemonError(DaemonErrorKind.Unsupported, "a singleton without --fscache has no FUSE or cachefiles fd to take over"))));
        // A successor must not serve a taken-over connection before it has mounted again what the journal records:
        // the kernel's node ids of those instances would answer ESTALE meanwhile. Held until the restore is done.
        Receive<DaemonCommand>(c => _restoringMounts && c.Input is DaemonInput.Takeover or DaemonInput.Start, _ => Stash.Stash());
        Receive<DaemonCommand>(c =>
        {
            _failoverTakeover = c.Input == DaemonInput.Takeover && c.Failover;
            BeginSequence([c.Input], Sender);
        });
        Receive<TriggerStop>(_ => BeginSequence(DaemonStateMachine.StopSequence(_reported), Sender));
        Receive<TriggerExit>(_ => BeginSequence(DaemonStateMachine.ExitSequence(_reported), Sender, exiting: true));
        Receive<ServiceEnded>(e =>
        {
            _log.Warning("Service ended on its own ({Reason}); shutting down", e.Reason);
            BeginSequence(DaemonStateMachine.StopSequence(_reported), ActorRefs.Nobody);
        });
        ReceiveCommon();
    }

    private void RunningAction()
    {
        Receive<ServiceActionResult>(r => r.Action == _runningAction, OnActionResult);
        Receive<HandoffMountsRestored>(OnHandoffMountsRestored);
        Receive<ActionTimedOut>(t => t.Generation == _actionGeneration, _ =>
            FailSequence(new DaemonError(DaemonErrorKind.ActionFailed, $"action {_runningAction} timed out after {_settings.ActionTimeout}")));
        ReceiveCommon();
        ReceiveAny(_ => Stash.Stash());
    }

    private void ReceiveCommon()
    {
        // A restart serves before its journal has recovered; until the recorded instances are mounted again, a
        // handoff state would leave them out (a successor would not serve them): sendfd waits for the restore.
        Receive<SendFuseFd>(_ => _restoringMounts, _ => Stash.Stash());
        Receive<GetDaemonInfo>(_ => Sender.Tell(new DaemonInfo(_settings.Id, _settings.Supervisor, _reported, _backends)));
        Receive<BackendsChanged>(b =>
        {
            _backends = b.Backends;
            _mountRecords = b.Records.IsDefault ? [] : b.Records;
        });
        // Mount table changes do not go through the state machine (upstream serves them in any state): the
        // filesystem service orders them itself.
        Receive<RestoreMounts>(r =>
        {
            _restoringMounts = true;
            var replyTo = Sender;
            _fsService.Ask<MountOperationResult>(r, Timeout.InfiniteTimeSpan)
                .PipeTo(Self, success: result => new MountsRestored(result, replyTo),
                    failure: e => new MountsRestored(new MountOperationResult(MountErrorKind.Failed, $"restoring the mount table failed: {e.Message}"), replyTo));
        });
        Receive<MountsRestored>(m =>
        {
            _restoringMounts = false;
            m.ReplyTo.Tell(m.Result);
            Stash.UnstashAll();
        });
        Receive<IMountRequest>(r => _fsService.Forward(r));
        Receive<ExportBlockDevice>(ExportBlockDevice);
        Receive<IBlockServiceMessage>(m => _blockService.Forward(m));
        // The blob cache manager (/api/v2/blobs), like the mount table, changes in any state.
        Receive<AddBlobEntry>(r => _blobCache.Forward(r));
        Receive<RemoveBlobEntry>(r => _blobCache.Forward(r));
        Receive<ListBlobEntries>(r => _blobCache.Forward(r));
        // A cull is the kernel's cache files: an fscache singleton's service has the device (a singleton's only service).
        Receive<CullBlob>(c =>
        {
            if (_settings.Kind == DaemonKind.Singleton && _service is not null) _service.Forward(c);
            else Sender.Tell(BlobCacheResult.Fail(BlobCacheErrorKind.Unsupported,
                $"culling blob {c.BlobId} deletes fscache cache files: this daemon serves no fscache (nydusd singleton --fscache)"));
        });
        // Not an input: the service answers the asker directly, even while an action runs elsewhere in the tree.
        Receive<SendFuseFd>(m =>
        {
            if (_service is null)
                Sender.Tell(new FuseFdSent(new DaemonError(DaemonErrorKind.Unsupported, "this daemon has no FUSE or cachefiles fd to send (a singleton without --fscache)")));
            else if (_backends.Values.FirstOrDefault(b => b.BackendType == FsBackendType.PassthroughFs.ToDisplayString()) is { } shared)
                // A passthrough instance's node ids are this process's O_PATH handles: a successor could not serve
                // what the kernel holds of it, so refuse rather than hand over a mount that would answer ESTALE.
                Sender.Tell(new FuseFdSent(new DaemonError(DaemonErrorKind.Unsupported,
                    $"handing over a passthrough mount ({shared.Mountpoint}) is not supported yet: its node ids are not stable across processes")));
            else
            {
                var replyTo = Sender;
                var withMounts = m with { Instances = _mountRecords };
                var blobs = _blobCache.Ask<BlobEntries>(GetBlobEntries.Instance, _settings.ActionTimeout);
                var exports = _blockService.Ask<BlockExportRecords>(GetBlockExportRecords.Instance, _settings.ActionTimeout);
                Task.WhenAll(blobs, exports).PipeTo(Self,
                    success: () => new SendFdWithBlobEntries(withMounts with { BlobEntries = blobs.Result.Entries, BlockExports = exports.Result.Exports }, replyTo),
                    failure: e => new SendFdWithBlobEntries(null, replyTo, e.Message));
            }
        });
        Receive<SendFdWithBlobEntries>(s =>
        {
            if (s.Message is null)
                s.ReplyTo.Tell(new FuseFdSent(new DaemonError(DaemonErrorKind.ActionFailed, $"the blob cache manager or the block service did not give its entries: {s.Error}")));
            else
                _service!.Tell(s.Message, s.ReplyTo);
        });
        Receive<GetDaemonRecord>(g => _journal.Forward(g));
        Receive<Terminated>(t => t.ActorRef.Equals(_service), _ =>
            Self.Tell(new ServiceEnded("the service actor stopped")));
        // A journal that cannot be read at start: serving would treat an unreadable mount table as an empty one.
        Receive<DaemonJournalUnreadable>(u => _settings.Outcome.Fail(u.Description));
        // Without its journal the daemon could not record a mount nor hand its state to a successor: stop rather
        // than serve on with state that would be lost. (Failed writes do not stop it: the guard answers them.)
        Receive<Terminated>(t => t.ActorRef.Equals(_journal), _ =>
        {
            _journalStopped = true;
            _settings.Outcome.Fail("the daemon journal (persistence) failed");
            Self.Tell(new ServiceEnded("the daemon journal (persistence) failed"));
        });
    }

    /// <summary>An export of a mounted instance serves its image with its config as the mount table has them now
    /// (the export is recorded with both and outlives an unmount).</summary>
    private void ExportBlockDevice(ExportBlockDevice request)
    {
        if (request.Mountpoint is null || request.Source is not null)
        {
            _blockService.Forward(request);
            return;
        }
        var mount = _mountRecords.FirstOrDefault(m => m.Mountpoint == request.Mountpoint);
        if (mount is null)
            Sender.Tell(BlockServiceResult.Fail(BlockErrorKind.NotFound, $"nothing is mounted at {request.Mountpoint}"));
        else if (mount.FsType != FsBackendType.Rafs.ToDisplayString())
            Sender.Tell(BlockServiceResult.Fail(BlockErrorKind.Invalid, $"the instance at {request.Mountpoint} is a {mount.FsType}, not an image: only RAFS v6 and EROFS images are block devices"));
        else
            _blockService.Forward(request with { Source = mount.Source, Config = mount.Config });
    }

    private void BeginSequence(DaemonInput[] inputs, IActorRef replyTo, bool exiting = false)
    {
        // An exit input leaves the mount as well (an exit from INIT is a stop input: TriggerExit says so). A virtio-fs
        // daemon has no successor to leave anything to (a vhost-user connection cannot be handed over): its exit
        // stops the actor tree like a stop, which closes the VMM's connection and removes the socket.
        _exiting = (exiting || inputs.Contains(DaemonInput.Exit)) && _settings.Kind != DaemonKind.VirtioFs;
        _pending.Clear();
        foreach (var input in inputs) _pending.Enqueue(input);
        _replyTo = replyTo;
        _sequenceTimer = new Fuse.Session.HandoffStepTimer();
        _sequenceName = string.Join("+", inputs);
        NextInput();
    }

    private void NextInput()
    {
        if (_pending.Count == 0)
        {
            FinishSequence(null);
            return;
        }
        if (_reported == DaemonState.Stopped)
        {
            FailSequence(new DaemonError(DaemonErrorKind.Stopped, "the daemon has stopped"));
            return;
        }

        var input = _pending.Dequeue();
        var from = _fsm;
        if (!DaemonStateMachine.TryTransition(from, input, out var to, out var action))
        {
            FailSequence(new DaemonError(DaemonErrorKind.UnexpectedEvent, $"unexpected event {input} in state {from}"));
            return;
        }

        // Upstream commits the transition before the action runs; a failed action leaves the machine moved and the
        // reported state as it was.
        _fsm = to;
        _log.Info("Daemon state machine {From} --{Input}--> {To}, action {Action}", from, input, to, action);
        if (action == DaemonAction.None)
        {
            NextInput();
            return;
        }
        if (_service is null || action == DaemonAction.StopStateMachine)
        {
            ApplyActionSucceeded(action);
            return;
        }

        _runningAction = action;
        var generation = ++_actionGeneration;
        _service.Tell(new ServiceActionRequest(action) { Failover = action == DaemonAction.Restore && _failoverTakeover });
        Timers.StartSingleTimer("action-timeout", new ActionTimedOut(generation), _settings.ActionTimeout);
        Become(RunningAction);
    }

    private void OnActionResult(ServiceActionResult result)
    {
        _sequenceTimer?.Mark($"{result.Action} by the service");
        Timers.Cancel("action-timeout");
        _actionGeneration++; // a timeout already queued is now stale
        if (result.Error is null && result.Action == DaemonAction.Restore && result.Received is { } state)
        {
            // Still in RunningAction: READY only once the predecessor's table is served here.
            RestoreHandoffMounts(state);
            return;
        }
        Become(Idle);
        Stash.UnstashAll();
        if (result.Error is not null)
        {
            if (result.Action == DaemonAction.Restore)
            {
                // Deviation from upstream (whose machine stays in Ready, so the process must be restarted): a failed
                // restore installed nothing, so the machine goes back to Init and the supervisor may try again.
                _fsm = DaemonFsmState.Init;
            }
            // A failed restore is a failed exchange with the supervisor: upstream's UpgradeManager error.
            var kind = result.Action == DaemonAction.Restore ? DaemonErrorKind.UpgradeManager : DaemonErrorKind.ActionFailed;
            FailSequence(new DaemonError(kind, $"action {result.Action} failed: {result.Error}"));
            return;
        }
        ApplyActionSucceeded(result.Action);
    }

    /// <summary>
    /// A successor serves its predecessor's mount table before it reports READY: from the handoff state when it
    /// carries the table (no wait on the journal, which recovers meanwhile), else from the journal both share (a
    /// predecessor of an older build). Either way every mountpoint the predecessor served must be served here.
    /// </summary>
    private void RestoreHandoffMounts(Upgrade.HandoffState state)
    {
        if (state.BlobEntries is { } blobEntries) _blobCache.Tell(new RestoreBlobEntries([.. blobEntries]));
        // The exports are served again as soon as this daemon runs (its predecessor holds their addresses until then).
        if (state.BlockExports is { } blockExports)
            _blockService.Tell(new RestoreBlockExports([.. blockExports.Select(e => new BlockExportRecord(e.Name, e.Source, e.Config, e.Mountpoint, e.Address))]));
        var required = state.Mounts.Where(m => m.Kind != Upgrade.HandoffMountKinds.None).Select(m => m.Mountpoint)
            .Concat(state.Instances?.Select(i => i.Mountpoint) ?? []).Distinct().ToArray();
        if (required.Length == 0 && state.Instances is { Count: 0 })
        {
            // Nothing mounted (an fscache singleton's state): nothing for the fs-service, which a singleton has not.
            Self.Tell(new HandoffMountsRestored(MountOperationResult.Done("no mounts in the handoff state")));
            return;
        }
        var restore = new RestoreMounts
        {
            FromHandoff = state.Instances is { } instances ? [.. instances.Select(MountCommands.FromHandoff)] : null,
            Required = required,
        };
        _fsService.Ask<MountOperationResult>(restore, _settings.ActionTimeout).PipeTo(Self,
            success: r => new HandoffMountsRestored(r),
            failure: e => new HandoffMountsRestored(new MountOperationResult(MountErrorKind.Failed, e.Message)));
    }

    private void OnHandoffMountsRestored(HandoffMountsRestored restored)
    {
        _sequenceTimer?.Mark("mount table restored");
        if (restored.Result.Succeeded)
        {
            _log.Info("Took over the mount table: {0}", restored.Result.Message);
            Become(Idle);
            Stash.UnstashAll();
            ApplyActionSucceeded(DaemonAction.Restore);
            return;
        }
        // Nothing was served from the taken-over fd yet (no worker started): give it back to the supervisor's care and
        // stay in INIT, so the predecessor keeps serving and the takeover can be retried.
        _service?.Tell(AbandonTakeover.Instance);
        _fsm = DaemonFsmState.Init;
        var failures = restored.Result.Failures.IsDefaultOrEmpty ? "" : ": " + string.Join("; ", restored.Result.Failures);
        FailSequence(new DaemonError(DaemonErrorKind.UpgradeManager,
            $"takeover refused: the predecessor's mount table could not be served here ({restored.Result.Message}{failures})"));
    }

    private void ApplyActionSucceeded(DaemonAction action)
    {
        var previous = _reported;
        _reported = DaemonStateMachine.ReportedStateAfter(action) ?? _reported;
        // Published before the input is answered: a client that saw its answer reads the new state.
        if (previous != _reported) _settings.ReadModel.PublishState(_reported);
        if (_settings.DeferStartRecord && !_startRecorded && _reported == DaemonState.Running)
        {
            // The predecessor has exited (upstream's sequence starts a successor only after that): the journal is ours.
            _startRecorded = true;
            _journal.Tell(RecordDaemonStart.Instance);
            _fsService.Tell(JournalIsOurs.Instance);
            _blockService.Tell(BlockServiceMayServe.Instance);
            _blobCache.Tell(BlobJournalIsOurs.Instance);
        }
        if (previous != _reported)
            _log.Info("Daemon state {Previous} -> {State}", previous.ToApiName(), _reported.ToApiName());
        NextInput();
    }

    private void FailSequence(DaemonError error)
    {
        _log.Warning("Daemon input refused or failed: {Error}", error.Message);
        _pending.Clear();
        Become(Idle);
        Stash.UnstashAll();
        Reply(error);
    }

    private void FinishSequence(DaemonError? error) => Reply(error);

    private void Reply(DaemonError? error)
    {
        if (!_replyTo.IsNobody()) _replyTo.Tell(new DaemonCommandResult(_reported, error));
        _replyTo = ActorRefs.Nobody;
        if (_sequenceTimer is { } timer)
        {
            _log.Info("Daemon input {Inputs} answered {State}{Outcome} in {Timings}", _sequenceName, _reported.ToApiName(),
                error is null ? "" : " (failed)", timer.ToString());
            _sequenceTimer = null;
        }
        if (_reported == DaemonState.Stopped)
        {
            // Upstream's state machine thread ends here; the host watches this actor and ends the process.
            _log.Info("Daemon stopped");
            _settings.Outcome.MarkStopped();
            StopAfterJournalFlush();
        }
    }

    /// <summary>The host ends the process as soon as this actor stops, without a graceful shutdown of the actor
    /// system (an old daemon must be gone within milliseconds of handing over): so the journal first confirms that
    /// every write asked of it is on disk. Bounded: a journal that cannot answer does not keep the process alive.
    /// After an exit this actor does not stop at all: it tells the host the mount is left to the successor
    /// (<see cref="DaemonOutcome.LeftToSuccessor"/>) and keeps answering as STOPPED until the process ends.</summary>
    private void StopAfterJournalFlush()
    {
        if (_journalStopped)
        {
            Done();
            return;
        }
        Become(() =>
        {
            Receive<JournalFlushed>(_ => Done());
            Receive<Status.Failure>(f =>
            {
                _log.Warning("The journal did not confirm its writes before the stop: {0}", f.Cause.Message);
                Done();
            });
            Receive<Terminated>(t => t.ActorRef.Equals(_journal), _ => Done());
            Receive<GetDaemonInfo>(_ => Sender.Tell(new DaemonInfo(_settings.Id, _settings.Supervisor, _reported, _backends)));
            Receive<DaemonCommand>(_ => Sender.Tell(new DaemonCommandResult(_reported,
                new DaemonError(DaemonErrorKind.Stopped, "the daemon has stopped"))));
        });
        _journal.Ask<JournalFlushed>(FlushJournal.Instance, JournalFlushTimeout).PipeTo(Self);

        void Done()
        {
            if (_exiting) _settings.Outcome.MarkLeftToSuccessor();
            else
            {
                _settings.Outcome.MarkJournalFlushed();
                Context.Stop(Self);
            }
        }
    }

    private static readonly TimeSpan JournalFlushTimeout = TimeSpan.FromSeconds(10);

    private sealed record ActionTimedOut(int Generation);
}

/// <summary>A sendfd with the blob cache manager's entries added, on its way to the service.</summary>
internal sealed record SendFdWithBlobEntries(SendFuseFd? Message, IActorRef ReplyTo, string? Error = null);

/// <summary>The fs-service's answer to restoring a taken-over mount table.</summary>
internal sealed record HandoffMountsRestored(MountOperationResult Result);

/// <summary>The fs-service's answer to <see cref="RestoreMounts"/>, on its way back through the daemon actor.</summary>
internal sealed record MountsRestored(MountOperationResult Result, IActorRef ReplyTo);
