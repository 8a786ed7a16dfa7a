using System.Text.Json;
using System.Text.Json.Nodes;

namespace Verifier.Core;

/// <summary>An artefact a transcript is about, named by SHA-256 so a replay against other files is refused. A sharded
/// bound names the whole dataset and, in <paramref name="Part"/>, its shard (spec/shards.md).</summary>
public sealed record TranscriptArtefact(string Role, string Sha256, string? Path, JsonObject? Part = null);

/// <summary>One step of a proof (spec/transcript.md): the lemma it applies (proofs/&lt;lemma&gt;), the earlier steps
/// it uses, where it applies (scope), what it claims (upper bounds on named real quantities), advice data it
/// brings (e.g. a token's sparse features; not a claim), and its cost.</summary>
public sealed record TranscriptStep(
    string Lemma, IReadOnlyList<int> Inputs, JsonObject Scope, JsonObject Claim, long Flops, bool DatasetDependent, JsonObject? Data = null);

/// <summary>A bound that overflowed to ±∞ or NaN: refused rather than written.</summary>
public sealed class NonFiniteClaimException(string message) : VerifierException(message)
{
    public override int ExitCode => ExitCodes.Numeric;
}

public sealed record TranscriptCost(long Flops, long FlopsDatasetDependent, long FlopsDatasetIndependent, double AdviceBits, int PrecisionBits, double Bits);

/// <summary>Streams a transcript to disk: header, then steps as they are produced, then the result. Written to a
/// temporary file and renamed into place by <see cref="Complete"/>; disposed before that, nothing is left behind.</summary>
public sealed class TranscriptWriter : IDisposable
{
    public const string Schema = "verifier-transcript/1";
    readonly string _path, _tmp;
    readonly FileStream _stream;
    readonly Utf8JsonWriter _w;
    int _next;
    long _flopsDep, _flopsIndep;
    bool _done;

    public int StepCount => _next;
    public long FlopsDatasetDependent => _flopsDep;
    public long FlopsDatasetIndependent => _flopsIndep;

    public TranscriptWriter(string path, IEnumerable<TranscriptArtefact> artefacts, string strategy, JsonObject parameters)
    {
        _path = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        _tmp = $"{_path}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        _stream = new FileStream(_tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        _w = new Utf8JsonWriter(_stream, new JsonWriterOptions { Indented = false });
        _w.WriteStartObject();
        _w.WriteString("schema", Schema);
        _w.WriteStartObject("artefacts");
        foreach (var a in artefacts)
        {
            _w.WriteStartObject(a.Role);
            _w.WriteString("sha256", a.Sha256);
            if (a.Path is not null) _w.WriteString("path", a.Path);
            if (a.Part is not null) { _w.WritePropertyName("part"); a.Part.WriteTo(_w); }
            _w.WriteEndObject();
        }
        _w.WriteEndObject();
        _w.WriteStartObject("strategy");
        _w.WriteString("name", strategy);
        _w.WritePropertyName("parameters");
        parameters.WriteTo(_w);
        _w.WriteEndObject();
        _w.WriteStartArray("steps");
    }

    /// <summary>Appends a step and returns its id. Inputs must be earlier ids.</summary>
    public int Add(TranscriptStep s)
    {
        if (_done) throw new InvalidOperationException("transcript already complete");
        int id = _next++;
        foreach (int i in s.Inputs)
            if (i < 0 || i >= id) throw new ArgumentException($"step {id} ({s.Lemma}) refers to step {i}, which is not earlier");
        if (s.Flops < 0) throw new ArgumentException("negative cost");
        if (FirstNonFinite(s.Claim) is { } bad)
            throw new NonFiniteClaimException($"step {id} ({s.Lemma}) would claim {bad}: the bound overflowed and is vacuous; nothing was written");
        if (s.DatasetDependent) _flopsDep += s.Flops; else _flopsIndep += s.Flops;
        _w.WriteStartObject();
        _w.WriteNumber("id", id);
        _w.WriteString("lemma", s.Lemma);
        _w.WriteStartArray("inputs");
        foreach (int i in s.Inputs) _w.WriteNumberValue(i);
        _w.WriteEndArray();
        _w.WritePropertyName("scope"); s.Scope.WriteTo(_w);
        _w.WritePropertyName("claim"); s.Claim.WriteTo(_w);
        if (s.Data is not null) { _w.WritePropertyName("data"); s.Data.WriteTo(_w); }
        _w.WriteStartObject("cost");
        _w.WriteNumber("flops", s.Flops);
        _w.WriteBoolean("dataset_dependent", s.DatasetDependent);
        _w.WriteEndObject();
        _w.WriteEndObject();
        if (_w.BytesPending > 1 << 16) _w.Flush();
        return id;
    }

    /// <summary>Writes the interactions, the result and the cost totals, and moves the file into place.</summary>
    public TranscriptCost Complete(JsonArray interactions, double b0, int finalStep, double? trueLoss, double adviceBits, int precisionBits = 64)
    {
        _w.WriteEndArray();
        _w.WritePropertyName("interactions"); interactions.WriteTo(_w);
        _w.WriteStartObject("result");
        _w.WriteNumber("b0", b0);
        _w.WriteNumber("final_step", finalStep);
        if (trueLoss is { } tl) _w.WriteNumber("true_loss", tl); else _w.WriteNull("true_loss");
        _w.WriteEndObject();
        long flops = _flopsDep + _flopsIndep;
        double bits = adviceBits + flops * (precisionBits * Math.Log2(precisionBits));
        var cost = new TranscriptCost(flops, _flopsDep, _flopsIndep, adviceBits, precisionBits, bits);
        _w.WriteStartObject("cost");
        _w.WriteNumber("flops", cost.Flops);
        _w.WriteNumber("flops_dataset_dependent", cost.FlopsDatasetDependent);
        _w.WriteNumber("flops_dataset_independent", cost.FlopsDatasetIndependent);
        _w.WriteNumber("advice_bits", cost.AdviceBits);
        _w.WriteNumber("precision_bits", cost.PrecisionBits);
        _w.WriteNumber("bits", cost.Bits);
        _w.WriteEndObject();
        _w.WriteEndObject();
        _w.Flush();
        _stream.Flush(flushToDisk: true);
        _w.Dispose();
        _stream.Dispose();
        File.Move(_tmp, _path, overwrite: true);
        _done = true;
        return cost;
    }

    static string? FirstNonFinite(JsonNode? n) => n switch
    {
        JsonValue v when v.TryGetValue(out double d) && !double.IsFinite(d) => d.ToString(),
        JsonObject o => o.Select(p => FirstNonFinite(p.Value)).FirstOrDefault(x => x is not null),
        JsonArray a => a.Select(FirstNonFinite).FirstOrDefault(x => x is not null),
        _ => null,
    };

    public void Dispose()
    {
        if (_done) return;
        _w.Dispose();
        _stream.Dispose();
        if (File.Exists(_tmp)) File.Delete(_tmp);
    }
}
