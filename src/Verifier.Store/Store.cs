using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Verifier.Core;

namespace Verifier.Store;

public sealed record RunRecord(
    long Id, string Strategy, string Parameters, string ModelSha256, string DatasetSha256, string? CrosscoderSha256,
    double B0, double? TrueLoss, long Flops, double Bits, double WallSeconds, string TranscriptSha256, string TranscriptPath, string Created,
    string? Verdict = null, double? AccuracyLb = null);

/// <param name="Errors">ACC: the certified bound on misclassified labelled positions, out of <paramref name="Positions"/>;
/// <paramref name="AccuracyLb"/> = 1 − errors/positions rounded down (accepted checks that certify one).</param>
public sealed record CheckRecord(
    string TranscriptSha256, bool Accepted, string Reason, int? Step, string? Lemma, double? Claimed, double? Certified,
    string CheckerVersion, double Seconds, double? Errors = null, long? Positions = null, double? AccuracyLb = null);

public sealed record AuditEntry(long Seq, string At, string Action, string Payload, string PrevHash, string Hash);

/// <summary>An audit entry the user keeps outside the store (spec/store.md, "The head anchor"): written and parsed as SEQ:HASH.</summary>
public sealed record AuditHead(long Seq, string Hash)
{
    public override string ToString() => $"{Seq}:{Hash}";

    /// <summary>Parses SEQ:HASH (a decimal sequence number ≥ 0, a colon, 64 hex digits).</summary>
    public static AuditHead Parse(string text)
    {
        int colon = text.IndexOf(':');
        if (colon <= 0 || !long.TryParse(text.AsSpan(0, colon), NumberStyles.None, CultureInfo.InvariantCulture, out long seq)
            || text.Length - colon - 1 != 64 || !text[(colon + 1)..].All(char.IsAsciiHexDigit))
            throw new UsageException($"--head '{text}': expected SEQ:HASH, the sequence number and the 64-hex-digit hash that 'verifier audit head' prints");
        return new AuditHead(seq, text[(colon + 1)..].ToLowerInvariant());
    }
}

/// <summary>A database that cannot be used: locked beyond the busy timeout, not a Verifier store, or too new.</summary>
public sealed class StoreException(string message, Exception? inner = null) : VerifierException(message, inner)
{
    public override int ExitCode => ExitCodes.Failure;
}

/// <summary>The store was changed behind the tool's back: the chain does not follow, a row differs from, is missing from or is
/// not covered by the chain, the noted head is not in the chain, or the file was truncated. Exit 8.</summary>
public sealed class AuditBrokenException(string message) : VerifierException(message)
{
    public override int ExitCode => ExitCodes.AuditBroken;

    public static AuditBrokenException From(AuditReport report) => new(
        $"{report.Path}: {report.Problems[0].Message}" +
        (report.Problems.Count > 1 ? $" (and {report.Problems.Count - 1} more; 'verifier audit verify --db {report.Path}' lists them)" : "") +
        "; refusing to show what the audit chain does not vouch for");
}

/// <summary>One SQLite file (spec/store.md). WAL mode and a busy timeout, so several processes can write at once;
/// every write is one IMMEDIATE transaction that also appends to the audit chain.</summary>
public sealed class VerifierStore : IDisposable
{
    public const string DefaultFileName = "verifier.db";
    public static readonly string Genesis = new('0', 64);
    readonly SqliteConnection _db;
    public string Path { get; }

    /// <summary>Migrations in order; version i+1 is Migrations[i]. Never edit a released one: append.</summary>
    static readonly string[] Migrations =
    [
        """
        CREATE TABLE artefacts (
            sha256 TEXT PRIMARY KEY CHECK (length(sha256) = 64),
            kind   TEXT NOT NULL,
            path   TEXT
        );
        CREATE TABLE runs (
            id                INTEGER PRIMARY KEY AUTOINCREMENT,
            strategy          TEXT NOT NULL,
            parameters        TEXT NOT NULL,
            model_sha256      TEXT NOT NULL,
            dataset_sha256    TEXT NOT NULL,
            crosscoder_sha256 TEXT,
            b0                REAL NOT NULL,
            true_loss         REAL,
            flops             INTEGER NOT NULL CHECK (flops >= 0),
            bits              REAL NOT NULL,
            wall_seconds      REAL NOT NULL,
            transcript_sha256 TEXT NOT NULL,
            transcript_path   TEXT NOT NULL,
            created           TEXT NOT NULL
        );
        CREATE INDEX runs_by_artefacts ON runs (model_sha256, dataset_sha256);
        CREATE TABLE checks (
            id                INTEGER PRIMARY KEY AUTOINCREMENT,
            transcript_sha256 TEXT NOT NULL,
            verdict           TEXT NOT NULL CHECK (verdict IN ('accepted', 'rejected')),
            reason            TEXT NOT NULL,
            step              INTEGER,
            lemma             TEXT,
            claimed           REAL,
            certified         REAL,
            checker_version   TEXT NOT NULL,
            seconds           REAL NOT NULL,
            created           TEXT NOT NULL
        );
        CREATE INDEX checks_by_transcript ON checks (transcript_sha256);
        CREATE TABLE audit (
            seq       INTEGER PRIMARY KEY AUTOINCREMENT,
            at        TEXT NOT NULL,
            action    TEXT NOT NULL,
            payload   TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash      TEXT NOT NULL UNIQUE
        );
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        """,
        """
        CREATE TABLE analyses (
            id                INTEGER PRIMARY KEY AUTOINCREMENT,
            kind              TEXT NOT NULL,
            model_sha256      TEXT NOT NULL,
            crosscoder_sha256 TEXT,
            dataset_sha256    TEXT NOT NULL,
            summary           TEXT NOT NULL,
            created           TEXT NOT NULL
        );
        """,
        """
        CREATE TRIGGER runs_no_update BEFORE UPDATE ON runs BEGIN SELECT RAISE(ABORT, 'runs are append-only'); END;
        CREATE TRIGGER runs_no_delete BEFORE DELETE ON runs BEGIN SELECT RAISE(ABORT, 'runs are append-only'); END;
        CREATE TRIGGER checks_no_update BEFORE UPDATE ON checks BEGIN SELECT RAISE(ABORT, 'checks are append-only'); END;
        CREATE TRIGGER checks_no_delete BEFORE DELETE ON checks BEGIN SELECT RAISE(ABORT, 'checks are append-only'); END;
        CREATE TRIGGER analyses_no_update BEFORE UPDATE ON analyses BEGIN SELECT RAISE(ABORT, 'analyses are append-only'); END;
        CREATE TRIGGER analyses_no_delete BEFORE DELETE ON analyses BEGIN SELECT RAISE(ABORT, 'analyses are append-only'); END;
        CREATE TRIGGER artefacts_no_update BEFORE UPDATE ON artefacts BEGIN SELECT RAISE(ABORT, 'artefacts are append-only'); END;
        CREATE TRIGGER artefacts_no_delete BEFORE DELETE ON artefacts BEGIN SELECT RAISE(ABORT, 'artefacts are append-only'); END;
        """,
        """
        CREATE TABLE check_accuracy (
            check_id    INTEGER PRIMARY KEY REFERENCES checks (id),
            errors      REAL NOT NULL CHECK (errors >= 0),
            positions   INTEGER NOT NULL CHECK (positions > 0),
            accuracy_lb REAL NOT NULL CHECK (accuracy_lb >= 0 AND accuracy_lb <= 1)
        );
        CREATE TRIGGER check_accuracy_no_update BEFORE UPDATE ON check_accuracy BEGIN SELECT RAISE(ABORT, 'check accuracies are append-only'); END;
        CREATE TRIGGER check_accuracy_no_delete BEFORE DELETE ON check_accuracy BEGIN SELECT RAISE(ABORT, 'check accuracies are append-only'); END;
        """,
    ];

    /// <summary>The SQL of migration <paramref name="version"/> (1-based), for tests that build a store as an older Verifier left it.</summary>
    public static string MigrationSql(int version) => Migrations[version - 1];

    /// <summary>The first version whose audit payloads hold complete rows ({"format":3,"rows":[…]}).</summary>
    public const int CoveringVersion = 3;

    public static int LatestVersion => Migrations.Length;

    /// <summary>The head this instance's last write produced (null before its first write).</summary>
    public AuditHead? LastWrite { get; private set; }

    /// <summary>Opens a store, creating the file when it does not exist (the writing commands).
    /// With <paramref name="create"/> false (the reading commands) a missing file is an error and nothing is created.</summary>
    public VerifierStore(string path, int busyTimeoutSeconds = 30, bool create = true) : this(path, busyTimeoutSeconds, create, publish: true) { }

    VerifierStore(string path, int busyTimeoutSeconds, bool create, bool publish)
    {
        Path = System.IO.Path.GetFullPath(path);
        if (!create && !File.Exists(Path))
            throw new InvalidInputException(Path, "store", "does not exist; 'verifier bound' and 'verifier check' create a store when they record a run or a check (or pass --db FILE)");
        // Verifier never leaves a 0-byte store (creating one writes the schema in the same call), so an empty file was truncated.
        if (File.Exists(Path) && new FileInfo(Path).Length == 0 && !(File.Exists(Path + "-wal") && new FileInfo(Path + "-wal").Length > 0))
            throw new AuditBrokenException($"{Path}: the store is empty (0 bytes): it was truncated or replaced, and every run, check and audit entry it held is gone; " +
                "if you did not expect records in it, delete the file to start a new store");
        if (create && System.IO.Path.GetDirectoryName(Path) is { } dir) Directory.CreateDirectory(dir);
        if (create && publish && !File.Exists(Path)) CreateNew(Path, busyTimeoutSeconds);
        _db = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = Path, Mode = create ? SqliteOpenMode.ReadWriteCreate : SqliteOpenMode.ReadWrite, DefaultTimeout = busyTimeoutSeconds, Pooling = false,
        }.ToString());
        try
        {
            Guard(() =>
            {
                _db.Open();
                Exec($"PRAGMA busy_timeout = {busyTimeoutSeconds * 1000};");
                Exec("PRAGMA journal_mode = WAL;");
                Exec("PRAGMA foreign_keys = ON;");
                Migrate(create);
            });
        }
        catch
        {
            _db.Dispose();
            throw;
        }
    }

    /// <summary>A new store is built whole in a temporary sibling (schema and migrations, WAL mode, checkpointed and closed)
    /// and published by an exclusive link, so no process ever sees a 0-byte store that is still being created (which would
    /// read as a truncated one); when another process published first, its store is used.</summary>
    static void CreateNew(string path, int busyTimeoutSeconds)
    {
        string tmp = $"{path}.new-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            using (var fresh = new VerifierStore(tmp, busyTimeoutSeconds, create: true, publish: false)) { }
            try { AtomicOutput.Publish(tmp, path, overwrite: false); }
            catch (OutputExistsException) { }
        }
        finally
        {
            foreach (var f in new[] { tmp, tmp + "-wal", tmp + "-shm" })
                if (File.Exists(f)) File.Delete(f);
        }
    }

    /// <summary>Opens an existing store for reading: a missing file is an error, an empty one is reported as truncated.</summary>
    public static VerifierStore OpenExisting(string path, int busyTimeoutSeconds = 30) => new(path, busyTimeoutSeconds, create: false);

    void Exec(string sql, SqliteTransaction? tx = null)
    {
        using var c = _db.CreateCommand();
        c.CommandText = sql; c.Transaction = tx;
        c.ExecuteNonQuery();
    }

    T Guard<T>(Func<T> f)
    {
        try { return f(); }
        catch (SqliteException e) when (e.SqliteErrorCode is 5 or 6)
        { throw new StoreException($"{Path}: the database is locked by another process (waited past the busy timeout); try again", e); }
        catch (SqliteException e) when (e.SqliteErrorCode is 26 or 11)
        { throw new StoreException($"{Path}: not a Verifier database, or corrupt ({e.Message})", e); }
    }

    void Guard(Action a) => Guard(() => { a(); return 0; });

    void Migrate(bool create)
    {
        // Up to date already: no write lock needed (readers can open a store another process is writing to).
        using (var probe = _db.CreateCommand())
        {
            probe.CommandText = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations';";
            if (probe.ExecuteScalar() is not null)
            {
                probe.CommandText = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations;";
                if (Convert.ToInt32(probe.ExecuteScalar(), CultureInfo.InvariantCulture) == Migrations.Length) return;
            }
            else if (!create)
                throw new StoreException($"{Path}: not a Verifier database (it has no schema_migrations table)");
        }
        using var tx = _db.BeginTransaction(deferred: false);
        Exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied TEXT NOT NULL);", tx);
        using var q = _db.CreateCommand();
        q.Transaction = tx;
        q.CommandText = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations;";
        int current = Convert.ToInt32(q.ExecuteScalar(), CultureInfo.InvariantCulture);
        if (current > Migrations.Length)
            throw new StoreException($"{Path}: schema version {current} is newer than this Verifier understands ({Migrations.Length}); upgrade Verifier");
        for (int v = current + 1; v <= Migrations.Length; v++)
        {
            Exec(Migrations[v - 1], tx);
            using var ins = _db.CreateCommand();
            ins.Transaction = tx;
            ins.CommandText = "INSERT INTO schema_migrations (version, applied) VALUES ($v, $at);";
            ins.Parameters.AddWithValue("$v", v);
            ins.Parameters.AddWithValue("$at", Now());
            ins.ExecuteNonQuery();
        }
        if (current is > 0 and < CoveringVersion) Adopt(tx);
        tx.Commit();
        Checkpoint();
    }

    /// <summary>Upgrading a store written before schema 3: its entries record only some columns of their rows, so one
    /// 'migrate' entry records every row as it is at the upgrade. From then on every row is covered in full.</summary>
    void Adopt(SqliteTransaction tx)
    {
        using var q = _db.CreateCommand();
        q.Transaction = tx;
        q.CommandText = "SELECT COUNT(*) FROM audit;";
        long legacy = Convert.ToInt64(q.ExecuteScalar(), CultureInfo.InvariantCulture);
        var rows = Rows.All.SelectMany(t => Rows.Read(_db, tx, t).Select(r => (t, r.Values))).ToList();
        if (legacy == 0 && rows.Count == 0) return;
        LastWrite = Append(tx, "migrate", Payload(rows, w => { w.WriteNumber("migration", CoveringVersion); w.WriteNumber("legacy_entries", legacy); }));
    }

    public int SchemaVersion => Guard(() =>
    {
        using var q = _db.CreateCommand();
        q.CommandText = "SELECT MAX(version) FROM schema_migrations;";
        return Convert.ToInt32(q.ExecuteScalar(), CultureInfo.InvariantCulture);
    });

    static string Now() => DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffffffZ", CultureInfo.InvariantCulture);

    /// <summary>The hash of an audit entry: SHA-256 over prev_hash, seq, at, action and payload, one per line.</summary>
    public static string EntryHash(string prevHash, long seq, string at, string action, string payload) =>
        Hashing.Sha256(Encoding.UTF8.GetBytes($"{prevHash}\n{seq}\n{at}\n{action}\n{payload}"));

    /// <summary>The payload of a schema-3 entry: {"format":3, …extra, "rows":[{"table":T,"row":{column: value, …}}, …]}.</summary>
    static string Payload(IEnumerable<(Rows.Table Table, object?[] Values)> rows, Action<Utf8JsonWriter>? extra = null)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteNumber("format", CoveringVersion);
            extra?.Invoke(w);
            w.WriteStartArray("rows");
            foreach (var (t, values) in rows) Rows.WriteRow(w, t, values);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    AuditHead Append(SqliteTransaction tx, string action, string payload)
    {
        using var last = _db.CreateCommand();
        last.Transaction = tx;
        last.CommandText = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1;";
        long seq = 1; string prev = Genesis;
        using (var r = last.ExecuteReader())
            if (r.Read()) { seq = r.GetInt64(0) + 1; prev = r.GetString(1); }
        string at = Now(), hash = EntryHash(prev, seq, at, action, payload);
        using var ins = _db.CreateCommand();
        ins.Transaction = tx;
        ins.CommandText = "INSERT INTO audit (seq, at, action, payload, prev_hash, hash) VALUES ($seq, $at, $action, $payload, $prev, $hash);";
        ins.Parameters.AddWithValue("$seq", seq);
        ins.Parameters.AddWithValue("$at", at);
        ins.Parameters.AddWithValue("$action", action);
        ins.Parameters.AddWithValue("$payload", payload);
        ins.Parameters.AddWithValue("$prev", prev);
        ins.Parameters.AddWithValue("$hash", hash);
        ins.ExecuteNonQuery();
        return new AuditHead(seq, hash);
    }

    /// <summary>Copies committed WAL frames into the main file without waiting for anyone, so a lost -wal loses as little as
    /// possible. Frames a concurrent reader still needs stay in the WAL until the next write or the last close.</summary>
    void Checkpoint() => Exec("PRAGMA wal_checkpoint(PASSIVE);");

    /// <summary>Runs <paramref name="write"/> and appends one audit entry holding the complete rows it inserted, in one
    /// IMMEDIATE transaction; then checkpoints.</summary>
    T Write<T>(string action, Func<SqliteTransaction, (T Result, List<(Rows.Table Table, object Key)> Inserted)> write) => Guard(() =>
    {
        using var tx = _db.BeginTransaction(deferred: false);
        var (result, inserted) = write(tx);
        var rows = inserted.Select(k => (k.Table, Rows.Read(_db, tx, k.Table, k.Key).Single().Values)).ToList();
        LastWrite = Append(tx, action, Payload(rows));
        tx.Commit();
        Checkpoint();
        return result;
    });

    /// <summary>Inserts an artefact unless its hash is known; true when it was inserted.</summary>
    bool Artefact(SqliteTransaction tx, string sha, string kind, string? path)
    {
        using var c = _db.CreateCommand();
        c.Transaction = tx;
        c.CommandText = "INSERT OR IGNORE INTO artefacts (sha256, kind, path) VALUES ($s, $k, $p);";
        c.Parameters.AddWithValue("$s", sha); c.Parameters.AddWithValue("$k", kind); c.Parameters.AddWithValue("$p", (object?)path ?? DBNull.Value);
        return c.ExecuteNonQuery() == 1;
    }

    public long RecordRun(RunRecord run, IEnumerable<TranscriptArtefact> artefacts) => Write("run", tx =>
    {
        var inserted = new List<(Rows.Table, object)>();
        foreach (var (sha, kind, path) in artefacts.Select(a => (a.Sha256, a.Role, (string?)a.Path)).Append((run.TranscriptSha256, "transcript", run.TranscriptPath)))
            if (Artefact(tx, sha, kind, path)) inserted.Add((Rows.Artefacts, sha));
        using var c = _db.CreateCommand();
        c.Transaction = tx;
        c.CommandText = """
            INSERT INTO runs (strategy, parameters, model_sha256, dataset_sha256, crosscoder_sha256, b0, true_loss, flops, bits, wall_seconds,
                              transcript_sha256, transcript_path, created)
            VALUES ($st, $pa, $m, $d, $cc, $b0, $tl, $fl, $bi, $ws, $ts, $tp, $cr) RETURNING id;
            """;
        c.Parameters.AddWithValue("$st", run.Strategy); c.Parameters.AddWithValue("$pa", run.Parameters);
        c.Parameters.AddWithValue("$m", run.ModelSha256); c.Parameters.AddWithValue("$d", run.DatasetSha256);
        c.Parameters.AddWithValue("$cc", (object?)run.CrosscoderSha256 ?? DBNull.Value);
        c.Parameters.AddWithValue("$b0", run.B0); c.Parameters.AddWithValue("$tl", (object?)run.TrueLoss ?? DBNull.Value);
        c.Parameters.AddWithValue("$fl", run.Flops); c.Parameters.AddWithValue("$bi", run.Bits); c.Parameters.AddWithValue("$ws", run.WallSeconds);
        c.Parameters.AddWithValue("$ts", run.TranscriptSha256); c.Parameters.AddWithValue("$tp", run.TranscriptPath);
        c.Parameters.AddWithValue("$cr", Now());
        long id = Convert.ToInt64(c.ExecuteScalar(), CultureInfo.InvariantCulture);
        inserted.Insert(0, (Rows.Runs, id));
        return (id, inserted);
    });

    public long RecordCheck(CheckRecord check) => Write("check", tx =>
    {
        using var c = _db.CreateCommand();
        c.Transaction = tx;
        c.CommandText = """
            INSERT INTO checks (transcript_sha256, verdict, reason, step, lemma, claimed, certified, checker_version, seconds, created)
            VALUES ($ts, $v, $r, $s, $l, $cl, $ce, $cv, $sec, $cr) RETURNING id;
            """;
        c.Parameters.AddWithValue("$ts", check.TranscriptSha256); c.Parameters.AddWithValue("$v", check.Accepted ? "accepted" : "rejected");
        c.Parameters.AddWithValue("$r", check.Reason); c.Parameters.AddWithValue("$s", (object?)check.Step ?? DBNull.Value);
        c.Parameters.AddWithValue("$l", (object?)check.Lemma ?? DBNull.Value); c.Parameters.AddWithValue("$cl", (object?)check.Claimed ?? DBNull.Value);
        c.Parameters.AddWithValue("$ce", (object?)check.Certified ?? DBNull.Value); c.Parameters.AddWithValue("$cv", check.CheckerVersion);
        c.Parameters.AddWithValue("$sec", check.Seconds); c.Parameters.AddWithValue("$cr", Now());
        long id = Convert.ToInt64(c.ExecuteScalar(), CultureInfo.InvariantCulture);
        var rows = new List<(Rows.Table, object)> { (Rows.Checks, id) };
        // The certified accuracy of an accepted check (ACC), recorded with it and covered by the same audit entry.
        if (check.Accepted && check.Errors is { } errors && check.Positions is { } positions && positions > 0 && check.AccuracyLb is { } acc)
        {
            using var a = _db.CreateCommand();
            a.Transaction = tx;
            a.CommandText = "INSERT INTO check_accuracy (check_id, errors, positions, accuracy_lb) VALUES ($id, $e, $p, $a);";
            a.Parameters.AddWithValue("$id", id); a.Parameters.AddWithValue("$e", errors);
            a.Parameters.AddWithValue("$p", positions); a.Parameters.AddWithValue("$a", acc);
            a.ExecuteNonQuery();
            rows.Add((Rows.CheckAccuracy, id));
        }
        return (id, rows);
    });

    /// <summary>Records an analysis (interactions, suppression) with its JSON summary.</summary>
    public long RecordAnalysis(string kind, string modelSha, string? crosscoderSha, string datasetSha, string summaryJson) => Write("analysis", tx =>
    {
        using var c = _db.CreateCommand();
        c.Transaction = tx;
        c.CommandText = "INSERT INTO analyses (kind, model_sha256, crosscoder_sha256, dataset_sha256, summary, created) VALUES ($k, $m, $c, $d, $s, $at) RETURNING id;";
        c.Parameters.AddWithValue("$k", kind); c.Parameters.AddWithValue("$m", modelSha);
        c.Parameters.AddWithValue("$c", (object?)crosscoderSha ?? DBNull.Value); c.Parameters.AddWithValue("$d", datasetSha);
        c.Parameters.AddWithValue("$s", summaryJson); c.Parameters.AddWithValue("$at", Now());
        long id = Convert.ToInt64(c.ExecuteScalar(), CultureInfo.InvariantCulture);
        return (id, new List<(Rows.Table, object)> { (Rows.Analyses, id) });
    });

    /// <summary>Runs, newest last, each with the verdict of the latest check of its transcript (null if never checked).
    /// The chain and every covered row are verified first, in the same read snapshot: a tampered store throws
    /// <see cref="AuditBrokenException"/> instead of answering.</summary>
    public IReadOnlyList<RunRecord> Runs(string? modelSha = null, string? datasetSha = null) => Guard(() =>
    {
        using var tx = _db.BeginTransaction(deferred: true);
        var report = AuditVerifier.Verify(_db, tx, Path, null);
        if (!report.Intact) throw AuditBrokenException.From(report);
        using var c = _db.CreateCommand();
        c.Transaction = tx;
        c.CommandText = """
            SELECT r.id, r.strategy, r.parameters, r.model_sha256, r.dataset_sha256, r.crosscoder_sha256, r.b0, r.true_loss, r.flops, r.bits,
                   r.wall_seconds, r.transcript_sha256, r.transcript_path, r.created,
                   (SELECT k.verdict FROM checks k WHERE k.transcript_sha256 = r.transcript_sha256 ORDER BY k.id DESC LIMIT 1),
                   (SELECT a.accuracy_lb FROM checks k JOIN check_accuracy a ON a.check_id = k.id
                    WHERE k.transcript_sha256 = r.transcript_sha256 ORDER BY k.id DESC LIMIT 1)
            FROM runs r
            WHERE ($m IS NULL OR r.model_sha256 = $m) AND ($d IS NULL OR r.dataset_sha256 = $d)
            ORDER BY r.id;
            """;
        c.Parameters.AddWithValue("$m", (object?)modelSha ?? DBNull.Value);
        c.Parameters.AddWithValue("$d", (object?)datasetSha ?? DBNull.Value);
        var list = new List<RunRecord>();
        using (var r = c.ExecuteReader())
            while (r.Read())
                list.Add(new RunRecord(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4), r.IsDBNull(5) ? null : r.GetString(5),
                    r.GetDouble(6), r.IsDBNull(7) ? null : r.GetDouble(7), r.GetInt64(8), r.GetDouble(9), r.GetDouble(10), r.GetString(11), r.GetString(12),
                    r.GetString(13), r.IsDBNull(14) ? null : r.GetString(14), r.IsDBNull(15) ? null : r.GetDouble(15)));
        tx.Commit();
        return list;
    });

    public IReadOnlyList<AuditEntry> Audit() => Guard(() =>
    {
        using var c = _db.CreateCommand();
        c.CommandText = "SELECT seq, at, action, payload, prev_hash, hash FROM audit ORDER BY seq;";
        var list = new List<AuditEntry>();
        using var r = c.ExecuteReader();
        while (r.Read()) list.Add(new AuditEntry(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4), r.GetString(5)));
        return list;
    });

    /// <summary>Recomputes the chain, compares every runs, checks, analyses and artefacts row with the entry that recorded it,
    /// and, given a head the user kept, requires that exact entry at that sequence number (spec/store.md).</summary>
    public AuditReport VerifyAudit(AuditHead? noted = null) => Guard(() =>
    {
        using var tx = _db.BeginTransaction(deferred: true);
        var report = AuditVerifier.Verify(_db, tx, Path, noted);
        tx.Commit();
        return report;
    });

    /// <summary>The verified head: the last entry of an intact chain (0 and 64 zeros when it is empty); throws
    /// <see cref="AuditBrokenException"/> when the store was tampered with, since such a head is not worth keeping.</summary>
    public AuditHead Head()
    {
        var report = VerifyAudit();
        if (!report.Intact) throw AuditBrokenException.From(report);
        return report.Head;
    }

    public void Dispose() => _db.Dispose();
}
