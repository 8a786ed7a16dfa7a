using System.Text.Json;
using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Checker;

/// <summary>A verdict that `check --verdict-out` wrote for one transcript, so that the check of a merged transcript can
/// take it instead of re-checking that shard (spec/shards.md). Using one trusts whoever could write the file.</summary>
public sealed record RecordedVerdict(string TranscriptSha256, bool Accepted, string CheckerVersion, string? Part, double? B0, double? LossSum,
    long? Positions, long? Flops, double? AdviceBits, IReadOnlyDictionary<string, string> Artefacts, double? Errors = null)
{
    public const string Format = "verifier-verdict/1";

    public static RecordedVerdict Of(Verdict v, string transcriptSha256) =>
        new(transcriptSha256, v.Accepted, TranscriptChecker.Version, v.Part, v.B0, v.LossSum, v.Positions, v.Flops, v.AdviceBits,
            v.Artefacts ?? new Dictionary<string, string>(), v.Errors);

    public string ToJson() => new JsonObject
    {
        ["format"] = Format, ["transcript_sha256"] = TranscriptSha256, ["verdict"] = Accepted ? "accepted" : "rejected",
        ["checker_version"] = CheckerVersion, ["part"] = Part, ["b0"] = B0, ["loss_sum"] = LossSum, ["positions"] = Positions,
        ["flops"] = Flops, ["advice_bits"] = AdviceBits, ["errors"] = Errors,
        ["artefacts"] = new JsonObject(Artefacts.OrderBy(a => a.Key, StringComparer.Ordinal).Select(a => KeyValuePair.Create(a.Key, (JsonNode?)a.Value))),
    }.ToJsonString() + "\n";

    public static RecordedVerdict Parse(string file, string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var e = doc.RootElement;
            JsonStream.RefuseDuplicateKeys(e, file);
            string Str(string n) => e.GetProperty(n).GetString() ?? throw new InvalidInputException(file, n, "must be a string");
            double? Num(string n) => e.GetProperty(n).ValueKind == JsonValueKind.Null ? null : e.GetProperty(n).GetDouble();
            long? Long(string n) => e.GetProperty(n).ValueKind == JsonValueKind.Null ? null : e.GetProperty(n).GetInt64();
            if (Str("format") != Format) throw new InvalidInputException(file, "format", $"expected {Format}");
            return new RecordedVerdict(Str("transcript_sha256"), Str("verdict") == "accepted", Str("checker_version"),
                e.GetProperty("part").ValueKind == JsonValueKind.Null ? null : Str("part"), Num("b0"), Num("loss_sum"), Long("positions"),
                Long("flops"), Num("advice_bits"), e.GetProperty("artefacts").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!),
                e.TryGetProperty("errors", out var er) && er.ValueKind == JsonValueKind.Number ? er.GetDouble() : null);
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or CheckFailure)
        {
            throw new InvalidInputException(file, "verdict", $"not a verdict file ({ex.Message})", ex);
        }
    }
}

/// <summary>SHARD (proofs/SHARD-merge.md): a merged transcript's step for shard i of n names the shard's transcript by
/// SHA-256 and claims its loss sum; the shard's transcript is checked against the same artefacts (or its recorded
/// verdict is taken when its hash, the checker's version and the artefacts match), must be about exactly shard i/n,
/// and its certified loss sum bounds the claim. MEAN then sums the shards, each sequence exactly once.</summary>
public sealed partial class TranscriptChecker
{
    IReadOnlyDictionary<string, RecordedVerdict>? _recorded;
    string _modelDir = "", _dataPath = "", _transcriptDir = "";
    string? _ccDir;
    int _shardCount = -1, _fromRecorded;

    Info ShardStep(Step s)
    {
        if (s.Inputs.Length != 0) Fail(s, "inputs: SHARD uses none");
        int i = s.ScopeInt("shard"), n = s.ScopeInt("count");
        if (_shardCount < 0) _shardCount = n;
        if (n != _shardCount) Fail(s, $"scope.count {n} differs from the other shards' {_shardCount}");
        if (n < 1 || n > _data.Count || i < 0 || i >= n) Fail(s, $"shard {i}/{n} is not a shard of the dataset's {_data.Count} sequences");
        Once(s, $"SHARD {i}/{n}");
        var tr = s.DataField("transcript");
        string Field(string name) => tr.ValueKind == JsonValueKind.Object && tr.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String
            ? v.GetString()! : throw new Rejection(s.Id, s.Lemma, $"data.transcript.{name} must be a string");
        foreach (var f in tr.EnumerateObject())
            if (f.Name is not ("sha256" or "path")) Fail(s, $"data.transcript: unknown field '{f.Name}'");
        string sha = Field("sha256"), path = Field("path");
        string full = Path.IsPathRooted(path) ? path : Path.Combine(_transcriptDir, path);
        if (!File.Exists(full)) Fail(s, $"shard {i}/{n}: its transcript {path} does not exist (paths are relative to the merged transcript)");
        string have = Hashing.Sha256File(full);
        if (have != sha) Fail(s, $"shard {i}/{n}: {path} has SHA-256 {have}, the merge names {sha}");

        RecordedVerdict v;
        if (_recorded is not null && _recorded.TryGetValue(sha, out var rec) && rec.Accepted && rec.CheckerVersion == Version
            && rec.Artefacts.Count == _hashes.Count && _hashes.All(h => rec.Artefacts.TryGetValue(h.Key, out var x) && x == h.Value))
        {
            v = rec; _fromRecorded++;
        }
        else
        {
            var verdict = Check(full, _modelDir, _ccDir, _dataPath);
            if (!verdict.Accepted) Fail(s, $"shard {i}/{n} ({path}) is rejected: {verdict.Summary}");
            // The bytes checked must be the ones the merge names (the file could have changed since it was hashed above).
            if (verdict.TranscriptSha256 != sha) Fail(s, $"shard {i}/{n}: the transcript checked has SHA-256 {verdict.TranscriptSha256}, the merge names {sha}");
            v = RecordedVerdict.Of(verdict, sha);
            _ownFlops += verdict.CheckerFlops;
        }
        if (v.Part != $"{i}/{n}") Fail(s, $"shard transcript {path} is about {(v.Part is null ? "the whole dataset" : $"shard {v.Part}")}, not shard {i}/{n}");
        if (v.LossSum is not { } sum || v.Flops is not { } flops) { Fail(s, $"shard {i}/{n}: its verdict carries no loss sum"); return null!; }
        double claim = s.Number("loss_sum");
        Certify(s, $"loss_sum of shard {i}/{n}", claim, sum);
        // ACC: the shard's certified errors (absent when the shard claims none; then the merge cannot claim any).
        double? errors = v.Errors is { } ve ? Errors(s, (long)Math.Floor(Math.Min(ve, v.Positions ?? 0)), v.Positions ?? 0, $"of shard {i}/{n}") : null;
        if (v.Errors is null && s.Claim.TryGetProperty("errors", out _)) Fail(s, $"shard {i}/{n} claims no errors, so its SHARD step may not");
        Cost(s, flops, true);
        _adviceBits += v.AdviceBits ?? 0;
        var (first, end) = new ShardSpec(i, n).Range(_data.Count);
        return new Info { Lemma = s.Lemma, Members = Enumerable.Range(first, end - first).ToArray(), Scalar = claim, Errors = errors };
    }
}
