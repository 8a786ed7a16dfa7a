using System.Diagnostics;
using System.Text.Json;
using Verifier.Core;

namespace Verifier.Checker;

/// <summary>The outcome: accepted, or the first step that could not be certified with the reason.</summary>
public sealed record Verdict(bool Accepted, string Reason, int? Step, string? Lemma, double? Claimed, double? Certified,
    int StepsChecked, long CheckerFlops, double Seconds, double? B0, string Strategy)
{
    // Reason, lemma and strategy quote the transcript's own text: controls (terminal escapes) and bidirectional
    // overrides are shown as \uXXXX so that no transcript can paint a false verdict on a terminal.
    public string Reason { get; } = Untrusted.Show(Reason);
    public string? Lemma { get; } = Lemma is null ? null : Untrusted.Show(Lemma);
    public string Strategy { get; } = Untrusted.Show(Strategy);

    /// <summary>For an accepted transcript: the certified Σ of the loss sums behind b₀, the labelled positions, the
    /// transcript's total FLOPs and advice bits, the artefact hashes it was checked against, and its part of the dataset
    /// ("i/n" for a shard, null for the whole; spec/shards.md).</summary>
    public double? LossSum { get; init; }
    /// <summary>When the final step claims it (ACC, every strategy): at most this many labelled positions are misclassified
    /// (every other one is certified: its label's logit strictly above all others), so accuracy ≥ 1 − Errors/Positions.</summary>
    public double? Errors { get; init; }
    public long? Positions { get; init; }
    public long? Flops { get; init; }
    public double? AdviceBits { get; init; }
    public IReadOnlyDictionary<string, string>? Artefacts { get; init; }
    public string? Part { get; init; }
    /// <summary>For a merged transcript: how many shards were taken from recorded verdicts instead of re-checked.</summary>
    public int ShardsFromRecordedVerdicts { get; init; }
    /// <summary>For an accepted transcript: SHA-256 of exactly the bytes the checker read (record verdicts under this hash).</summary>
    public string? TranscriptSha256 { get; init; }
    /// <summary>Certified accuracy: at least 1 − errors/positions (rounded down).</summary>
    public double? AccuracyLb => Errors is { } e && Positions is { } p && p > 0 ? Accuracy.Lower(e, p) : null;

    public string Summary => Accepted
        ? $"accepted: mean cross-entropy{(Part is null ? "" : $" over shard {Part}")} ≤ {B0:R}{(AccuracyLb is { } a ? $", accuracy ≥ {Math.Floor(a * 1e4) / 1e2:F2} %" : "")} ({Strategy}, {StepsChecked} steps{(ShardsFromRecordedVerdicts > 0 ? $", {ShardsFromRecordedVerdicts} shards from recorded verdicts" : "")})"
        : $"rejected at step {Step?.ToString() ?? "-"} ({Lemma ?? "-"}): {Reason}";
}

/// <summary>Untrusted text made safe to print: C0/C1 controls, DEL and bidirectional controls are escaped.</summary>
public static class Untrusted
{
    public static string Show(string s)
    {
        if (!s.Any(Bad)) return s;
        var b = new System.Text.StringBuilder(s.Length + 16);
        foreach (char c in s) b.Append(Bad(c) ? $"\\u{(int)c:x4}" : c.ToString());
        return b.ToString();
    }
    static bool Bad(char c) => c < 0x20 || c is >= '\u007f' and <= '\u009f' || c is >= '\u202a' and <= '\u202e' || c is >= '\u2066' and <= '\u2069'
        || c is '\u200e' or '\u200f' or '\u061c';
}

/// <summary>Replays a transcript (spec/transcript.md) against the artefacts it names: every claim is recomputed
/// in the checker's own interval arithmetic and must be at least the certified upper end; hashes, structure,
/// lemma IDs, side conditions, costs and b₀ are verified. Streams the steps (the file is never held whole);
/// keeps per step only the few numbers later steps may use, and drops a sequence's advice and ε vectors once its
/// L1 step is checked.</summary>
public sealed partial class TranscriptChecker
{
    public const string Version = "verifier-checker/1";
    public static readonly IReadOnlyDictionary<string, string[]> LemmasByStrategy = new Dictionary<string, string[]>
    {
        ["brute-force"] = ["BF", "BFB", "MEAN"],
        ["trivial"] = ["IP", "IPMEAN"],
        ["crosscoder-exhaustive"] = ["N1", "IP", "L2", "L5", "L4", "L1", "MEAN"],
        ["crosscoder-tables"] = ["N1", "IP", "T1", "L2", "T2", "L1", "INFO", "MEAN"],
        ["clustered"] = ["CL", "CLMEMBERS", "MEAN"],
        ["merge"] = ["SHARD", "MEAN"],
        ["crosscoder-compact"] = ["CT", "CC", "MEAN"],
        ["mixed"] = ["CT", "CC", "BF", "MEAN"],
    };

    readonly ModelWeights _w;
    readonly Forward _f;
    readonly CrosscoderWeights? _cc;
    TokenDataset _data;                 // the whole dataset, or the transcript's part of it (spec/shards.md)
    ShardSpec? _part;
    readonly HashSet<string> _named = [];
    readonly Dictionary<int, Info> _steps = new();
    string _strategy = "";
    long _flopsDep, _flopsIndep, _ownFlops;
    double _adviceBits;
    readonly HashSet<int> _featuresSeen = [];
    readonly Dictionary<int, int> _chainRoot = new();   // sequence → its one L2 step
    readonly Dictionary<string, int> _singletons = new(); // N1, T1-table, IP@t, CL…: steps a transcript holds once

    /// <summary>What later steps may use of an earlier one.</summary>
    sealed class Info
    {
        public required string Lemma;
        public int Sequence = -1;             // BFB: the block's first sequence
        public int End = -1;                  // BFB: one past its last
        public int Site = -1;
        public int Root = -1;                  // crosscoder chains: the L2 step (the advice) the chain started from
        public double? Errors;                 // ACC: the claimed bound on labelled positions not certified correct
        public bool[]? Certain;                // IP: per label, every input is classified so at this position
        public HashSet<(int, int)>? CertainCells; // CL: the (position, label) pairs certain over the whole box
        public double Scalar;
        public double[]? Vector;
        public (int Index, double Value)[][]? Features;
        public R[][]? Nominal;                 // exhaustive: nominal a' at this step's site
        public Dictionary<(int, int), double>? Ce;
        public R[][]? Box;
        public int[]? Members;
        public ClaimedNorms? Norms;
        public bool Consumed;
    }

    TranscriptChecker(ModelWeights w, CrosscoderWeights? cc, TokenDataset data)
    {
        _w = w; _f = new Forward(w); _cc = cc; _data = data;
    }

    /// <summary>Checks <paramref name="transcriptPath"/>. Bad artefacts (unreadable files) throw VerifierException; a
    /// transcript that cannot be certified gives a rejected verdict, never an exception.</summary>
    public static Verdict Check(string transcriptPath, string modelDir, string? crosscoderDir, string dataPath, IProgress<long>? progress = null,
        IReadOnlyDictionary<string, RecordedVerdict>? recorded = null)
    {
        var sw = Stopwatch.StartNew();
        var w = ModelWeights.Load(modelDir);
        var data = TokenDataset.Load(dataPath, w.Config);
        var cc = crosscoderDir is null ? null : CrosscoderWeights.Load(crosscoderDir);
        if (!File.Exists(transcriptPath)) throw new InvalidInputException(transcriptPath, "file", "does not exist");
        var checker = new TranscriptChecker(w, cc, data)
        {
            _recorded = recorded, _modelDir = modelDir, _ccDir = crosscoderDir, _dataPath = dataPath,
            _transcriptDir = Path.GetDirectoryName(Path.GetFullPath(transcriptPath))!,
        };
        int stepsChecked = 0; double? b0 = null;
        string? transcriptSha = null;
        Step? current = null;
        try
        {
            checker.CheckDimensions();
            using var js = new JsonStream(File.OpenRead(transcriptPath));
            b0 = checker.Run(js, modelDir, crosscoderDir, dataPath, s => { current = s; stepsChecked = s.Id + 1; if (s.Id % 256 == 0) progress?.Report(js.BytesRead); });
            transcriptSha = js.Sha256();
            return new Verdict(true, "every claim certified", null, null, null, null, stepsChecked, checker._ownFlops, sw.Elapsed.TotalSeconds, b0, checker._strategy)
            {
                TranscriptSha256 = transcriptSha, LossSum = checker._finalSum, Errors = checker._finalErrors, Positions = checker._data.LabelledPositions, Flops = checker._flopsDep + checker._flopsIndep,
                AdviceBits = checker._adviceBits, Artefacts = checker._hashes, Part = checker._part?.ToString(), ShardsFromRecordedVerdicts = checker._fromRecorded,
            };
        }
        catch (Rejection r)
        {
            return new Verdict(false, r.Message, r.Step, r.Lemma, r.Claimed, r.Certified, stepsChecked, checker._ownFlops, sw.Elapsed.TotalSeconds, null, checker._strategy);
        }
        catch (CheckFailure e)
        {
            return new Verdict(false, $"{e.What}: {e.Message}", current?.Id, current?.Lemma, null, null, stepsChecked, checker._ownFlops, sw.Elapsed.TotalSeconds, null, checker._strategy);
        }
        catch (JsonException e)
        {
            return new Verdict(false, $"format: not valid JSON: {e.Message}", current?.Id, current?.Lemma, null, null, stepsChecked, checker._ownFlops, sw.Elapsed.TotalSeconds, null, checker._strategy);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or KeyNotFoundException or IndexOutOfRangeException or ArgumentException or OverflowException)
        {
            return new Verdict(false, $"format: {e.Message}", current?.Id, current?.Lemma, null, null, stepsChecked, checker._ownFlops, sw.Elapsed.TotalSeconds, null, checker._strategy);
        }
    }

    sealed class Rejection(int step, string lemma, string message, double? claimed = null, double? certified = null) : Exception(message)
    {
        public int Step { get; } = step;
        public string Lemma { get; } = lemma;
        public double? Claimed { get; } = claimed;
        public double? Certified { get; } = certified;
    }

    static void Fail(Step s, string message) => throw new Rejection(s.Id, s.Lemma, message);

    /// <summary>Steps whose result every later step shares (N1, the T1 table, one IP row per position) appear once.</summary>
    void Once(Step s, string what)
    {
        if (!_singletons.TryAdd(what, s.Id)) Fail(s, $"a transcript holds one {what} step; step {_singletons[what]} is already one");
    }

    /// <summary>A claim is accepted only if it is at least the certified upper end.</summary>
    void Certify(Step s, string what, double claimed, double certified)
    {
        if (!(claimed >= certified))
            throw new Rejection(s.Id, s.Lemma, $"{what}: claimed {claimed:R} is below the certified {certified:R}", claimed, certified);
    }

    /// <summary>ACC (proofs/ACC-accuracy.md): an optional claim `errors` ≥ the labelled positions the step does not certify
    /// correctly classified (a claimed upper bound like every other; accuracy ≥ 1 − errors/|P|).</summary>
    /// A claim above the <paramref name="labelled"/> positions the step covers is refused: it says nothing, and sums of
    /// such claims could overflow (the second red team made MEAN's sum wrap and certify 100 %).
    double? Errors(Step s, long certified, long labelled, string where)
    {
        if (!s.Claim.TryGetProperty("errors", out _)) return null;
        double claimed = s.Number("errors");
        Certify(s, $"errors {where} (labelled positions not certified correctly classified)", claimed, certified);
        if (claimed > labelled) Fail(s, $"errors {where}: claimed {claimed:R}, more than the {labelled} labelled positions it covers");
        return claimed;
    }

    void Cost(Step s, long own, bool datasetDependent)
    {
        if (s.Flops != own) throw new Rejection(s.Id, s.Lemma, $"cost: the step claims {s.Flops} FLOPs, the checker counts {own} (spec/costs.md)", s.Flops, own);
        if (s.DatasetDependent != datasetDependent) throw new Rejection(s.Id, s.Lemma, $"cost: dataset_dependent must be {datasetDependent.ToString().ToLowerInvariant()}");
        if (datasetDependent) _flopsDep += own; else _flopsIndep += own;
    }

    Info Input(Step s, int index, params string[] lemmas)
    {
        if (index >= s.Inputs.Length) Fail(s, $"inputs: expected at least {index + 1} inputs");
        var info = _steps[s.Inputs[index]];
        if (!lemmas.Contains(info.Lemma)) Fail(s, $"inputs: input {index} (step {s.Inputs[index]}) is {info.Lemma}, expected {string.Join(" or ", lemmas)}");
        return info;
    }

    double? Run(JsonStream js, string modelDir, string? ccDir, string dataPath, Action<Step> onStep)
    {
        if (js.Token() != JsonTokenType.StartObject) throw new CheckFailure("format", "a transcript is a JSON object");
        string[] order = ["schema", "artefacts", "strategy", "steps", "interactions", "result", "cost"];
        int stepCount = 0;
        double? b0 = null;
        foreach (var expected in order)
        {
            string name = js.PropertyName();
            if (name != expected) throw new CheckFailure("format", name == "" ? $"missing '{expected}'" : $"expected '{expected}' next, found '{name}' (unknown, or out of the order of spec/transcript.md)");
            if (expected == "steps")
            {
                if (js.Token() != JsonTokenType.StartArray) throw new CheckFailure("format", "'steps' must be an array");
                while (js.Element() is { } doc)
                    using (doc)
                    {
                        JsonStream.RefuseDuplicateKeys(doc.RootElement, $"step {stepCount}");
                        var step = Step.Parse(doc.RootElement, stepCount++);
                        onStep(step);
                        CheckStep(step);
                    }
                continue;
            }
            using var value = js.Value();
            var e = value.RootElement;
            JsonStream.RefuseDuplicateKeys(e, $"'{expected}'");
            switch (expected)
            {
                case "schema":
                    if (e.ValueKind != JsonValueKind.String || e.GetString() != TranscriptWriter.Schema)
                        throw new CheckFailure("schema", $"expected \"{TranscriptWriter.Schema}\", found {e.GetRawText()}");
                    break;
                case "artefacts": CheckArtefacts(e, modelDir, ccDir); break;
                case "strategy":
                    if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty("name", out var sn) || sn.ValueKind != JsonValueKind.String)
                        throw new CheckFailure("format", "strategy.name must be a string");
                    _strategy = sn.GetString()!;
                    if (!LemmasByStrategy.ContainsKey(_strategy)) throw new CheckFailure("strategy", $"unknown strategy '{_strategy}'");
                    if (_strategy is not ("brute-force" or "trivial" or "merge") && _cc is null) throw new CheckFailure("artefacts", $"the strategy '{_strategy}' needs the crosscoder (--crosscoder)");
                    if (_strategy is not ("brute-force" or "trivial" or "merge") && !(_named.Contains("crosscoder_weights") && _named.Contains("crosscoder_config")))
                        throw new CheckFailure("artefacts", $"the strategy '{_strategy}' uses a crosscoder: the transcript must name crosscoder_weights and crosscoder_config");
                    if (_strategy == "merge" && _part is not null) throw new CheckFailure("artefacts", "a merged transcript is about the whole dataset: its dataset names no part");
                    break;
                case "interactions":
                    if (e.ValueKind != JsonValueKind.Array) throw new CheckFailure("format", "'interactions' must be an array");
                    break;
                case "result": b0 = CheckResult(e, stepCount); break;
                case "cost": CheckCost(e); break;
            }
        }
        if (js.PropertyName() != "") throw new CheckFailure("format", "fields after 'cost' (the schema is closed)");
        js.End();
        return b0;
    }

    /// <summary>Every dimension of every artefact against every other, before any arithmetic (spec/checker.md §1).
    /// The model's tensors were checked against its config, the crosscoder's against its config, and the
    /// dataset's tokens, labels and lengths against the model's vocabulary and n_ctx when they were loaded.</summary>
    void CheckDimensions()
    {
        // Non-basic models are refused per step (CheckStep, AllArchitectures), not here: BF, BFB, IP, CL and the
        // aggregations cover every architecture (proofs/R3-architectures.md).
        foreach (var (name, shape) in C.ParameterShapes())
            if (!_w[name].Shape.SequenceEqual(shape)) throw new CheckFailure("artefacts", $"model tensor {name} has shape [{string.Join(", ", _w[name].Shape)}], expected [{string.Join(", ", shape)}]");
        if (_cc is null) return;
        var cfg = _cc.Config;
        if (cfg.DModel != C.DModel) throw new CheckFailure("artefacts", $"the crosscoder's d_model {cfg.DModel} differs from the model's d_model {C.DModel}");
        foreach (var site in cfg.Sites)
            if (!Sites.Contains(site)) throw new CheckFailure("artefacts", $"the crosscoder's site '{site}' is not a residual site of the model ({string.Join(", ", Sites)})");
        foreach (var (name, shape) in CrosscoderWeights.Shapes(cfg))
            if (!_cc[name].Shape.SequenceEqual(shape)) throw new CheckFailure("artefacts", $"crosscoder tensor {name} has shape [{string.Join(", ", _cc[name].Shape)}], expected [{string.Join(", ", shape)}]");
    }

    void CheckArtefacts(JsonElement e, string modelDir, string? ccDir)
    {
        var expected = new Dictionary<string, Func<string>>
        {
            // The hashes of exactly the bytes that were parsed (a file swapped after loading cannot lend its hash).
            ["model_weights"] = () => _w.WeightsSha256 ?? Hashing.Sha256File(Path.Combine(modelDir, ModelWeights.WeightsFileName)),
            ["model_config"] = () => _w.ConfigSha256 ?? Hashing.Sha256File(Path.Combine(modelDir, ModelConfig.FileName)),
            ["dataset"] = () => _data.ContentHash(),
        };
        if (ccDir is not null)
        {
            expected["crosscoder_weights"] = () => _cc?.WeightsSha256 ?? Hashing.Sha256File(Path.Combine(ccDir, CrosscoderWeights.WeightsFileName));
            expected["crosscoder_config"] = () => _cc?.ConfigSha256 ?? Hashing.Sha256File(Path.Combine(ccDir, CrosscoderConfig.FileName));
        }
        if (e.ValueKind != JsonValueKind.Object) throw new CheckFailure("format", "'artefacts' must be an object");
        var named = _named;
        JsonElement? part = null;
        foreach (var p in e.EnumerateObject())
        {
            if (p.Name is not ("model_weights" or "model_config" or "dataset" or "crosscoder_weights" or "crosscoder_config"))
                throw new CheckFailure("artefacts", $"unknown artefact '{p.Name}'");
            if (p.Value.ValueKind != JsonValueKind.Object || !p.Value.TryGetProperty("sha256", out var h) || h.ValueKind != JsonValueKind.String)
                throw new CheckFailure("artefacts", $"{p.Name}.sha256 must be a string");
            foreach (var f in p.Value.EnumerateObject())
                if (!(f.Name is "sha256" or "path" || (f.Name == "part" && p.Name == "dataset")))
                    throw new CheckFailure("artefacts", $"{p.Name}: unknown field '{f.Name}'");
            if (p.Value.TryGetProperty("part", out var pt)) part = pt;
            named.Add(p.Name);
            if (!expected.TryGetValue(p.Name, out var actual)) throw new CheckFailure("artefacts", $"the transcript names {p.Name} but no such file was given (--crosscoder?)");
            string have = actual();
            _hashes[p.Name] = have;
            if (!string.Equals(h.GetString(), have, StringComparison.Ordinal))
                throw new CheckFailure("artefacts", $"{p.Name}: the transcript names SHA-256 {h.GetString()}, the file given has {have}");
        }
        foreach (var role in new[] { "model_weights", "model_config", "dataset" })
            if (!named.Contains(role)) throw new CheckFailure("artefacts", $"missing artefact '{role}'");
        if (part is { } ps) TakePart(ps);
    }

    /// <summary>A shard's transcript is about sequences [first, end) of the dataset whose hash it names: the part must be
    /// exactly shard index/count of the whole (spec/shards.md); from here on the checker sees only that part.</summary>
    void TakePart(JsonElement p)
    {
        int Get(string n) => p.ValueKind == JsonValueKind.Object && p.TryGetProperty(n, out var v) && v.TryGetInt32(out int x) ? x
            : throw new CheckFailure("artefacts", $"dataset.part.{n} must be an integer");
        foreach (var f in p.EnumerateObject())
            if (f.Name is not ("index" or "count" or "first" or "end" or "of")) throw new CheckFailure("artefacts", $"dataset.part: unknown field '{f.Name}'");
        int index = Get("index"), count = Get("count"), first = Get("first"), end = Get("end"), of = Get("of");
        if (of != _data.Count) throw new CheckFailure("artefacts", $"dataset.part.of {of} ≠ the dataset's {_data.Count} sequences");
        if (count < 1 || count > of || index < 0 || index >= count) throw new CheckFailure("artefacts", $"dataset.part: shard {index}/{count} is not a shard of {of} sequences");
        var spec = new ShardSpec(index, count);
        if (spec.Range(of) != (first, end)) throw new CheckFailure("artefacts", $"dataset.part: shard {spec} of {of} sequences is [{spec.Range(of).First}, {spec.Range(of).End}), not [{first}, {end})");
        _data = _data.Slice(first, end);
        if (_data.LabelledPositions == 0) throw new CheckFailure("artefacts", $"dataset.part: shard {spec} has no labelled position");
        _part = spec;
    }

    int _finalMeanStep = -1;
    double _finalB0, _finalSum;
    double? _finalErrors;
    readonly Dictionary<string, string> _hashes = new();

    double CheckResult(JsonElement e, int stepCount)
    {
        if (e.ValueKind != JsonValueKind.Object) throw new CheckFailure("format", "'result' must be an object");
        foreach (var p in e.EnumerateObject())
            if (p.Name is not ("b0" or "final_step" or "true_loss")) throw new CheckFailure("format", $"result: unknown field '{p.Name}'");
        double b0 = Step.Num(e, "b0", "result");
        if (!e.TryGetProperty("final_step", out var fs) || !fs.TryGetInt32(out int final)) throw new CheckFailure("format", "result.final_step must be an integer");
        if (final != _finalMeanStep || _finalMeanStep < 0) throw new CheckFailure("result", $"final_step {final} is not the step that certifies b0 (step {_finalMeanStep})");
        if (b0 != _finalB0) throw new CheckFailure("result", $"b0 {b0:R} differs from the claim of step {final} ({_finalB0:R})");
        return b0;
    }

    void CheckCost(JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Object) throw new CheckFailure("format", "'cost' must be an object");
        foreach (var p in e.EnumerateObject())
            if (p.Name is not ("flops" or "flops_dataset_dependent" or "flops_dataset_independent" or "advice_bits" or "precision_bits" or "bits"))
                throw new CheckFailure("format", $"cost: unknown field '{p.Name}'");
        long Get(string n) => e.TryGetProperty(n, out var v) && v.TryGetInt64(out long x) ? x : throw new CheckFailure("cost", $"cost.{n} must be an integer");
        if (Get("flops_dataset_dependent") != _flopsDep) throw new CheckFailure("cost", $"flops_dataset_dependent {Get("flops_dataset_dependent")} ≠ the steps' total {_flopsDep}");
        if (Get("flops_dataset_independent") != _flopsIndep) throw new CheckFailure("cost", $"flops_dataset_independent {Get("flops_dataset_independent")} ≠ the steps' total {_flopsIndep}");
        if (Get("flops") != _flopsDep + _flopsIndep) throw new CheckFailure("cost", $"flops {Get("flops")} ≠ {_flopsDep + _flopsIndep}");
        if (Get("precision_bits") != 64) throw new CheckFailure("cost", "precision_bits must be 64");
        double advice = Step.Num(e, "advice_bits", "cost"), bits = Step.Num(e, "bits", "cost");
        if (Math.Abs(advice - _adviceBits) > 1e-9 * Math.Max(1, _adviceBits)) throw new CheckFailure("cost", $"advice_bits {advice:R} ≠ the checker's {_adviceBits:R}");
        double own = _adviceBits + (_flopsDep + _flopsIndep) * (64 * Math.Log2(64));
        if (Math.Abs(bits - own) > 1e-9 * Math.Max(1, own)) throw new CheckFailure("cost", $"bits {bits:R} ≠ the checker's {own:R}");
    }

    /// <summary>The scope, claim and advice fields each lemma reads (spec/transcript.md): no other field is accepted, so no
    /// number in a step can be one the checker silently ignores.</summary>
    static readonly Dictionary<string, (string[] Scope, string[] Claim, string[] Data)> Fields = new()
    {
        ["BF"] = (["sequence"], ["loss_sum", "errors"], []),
        ["BFB"] = (["first", "end"], ["loss_sum", "errors"], []),
        ["MEAN"] = (["positions"], ["b0", "errors"], []),
        ["IP"] = (["position"], ["ce_by_label"], []),
        ["IPMEAN"] = (["positions"], ["b0", "errors"], []),
        ["N1"] = (["model"], ["W_Q", "W_K", "W_V", "W_O", "K_mlp", "W_in_col", "W_out_row", "unembed_diff"], []),
        ["T1-table"] = (["tables"], [], ["gates"]),
        ["L2"] = (["sequence", "site"], ["eps"], ["features"]),
        ["L5"] = (["sequence", "layer", "block", "site"], ["eps"], ["centres"]),
        ["T1"] = (["sequence", "layer", "block", "site"], ["eps"], ["centres"]),
        ["L4"] = (["sequence", "layer", "block", "site"], ["eps"], []),
        ["T2"] = (["sequence", "layer", "block", "site"], ["eps"], []),
        ["L1"] = (["sequence"], ["loss_sum", "errors"], []),
        ["INFO"] = (["work"], [], []),
        ["CL"] = (["cluster"], ["ce"], ["box"]),
        ["CLMEMBERS"] = (["cluster"], ["loss_sum", "errors"], ["members"]),
        ["CT"] = (["tables"], [], []),
        ["CC"] = (["sequence", "site"], ["loss_sum", "errors"], ["features"]),
        ["SHARD"] = (["shard", "count"], ["loss_sum", "errors"], ["transcript"]),
    };

    static void KnownFields(Step s)
    {
        string key = s.Lemma == "T1" && s.Inputs.Length == 0 ? "T1-table" : s.Lemma;
        if (!Fields.TryGetValue(key, out var f)) return;   // an unknown lemma is refused by CheckStep
        void Only(JsonElement? o, string[] allowed, string what)
        {
            if (o is not { } e) return;
            foreach (var p in e.EnumerateObject())
                if (!allowed.Contains(p.Name))
                    Fail(s, $"{what}: unknown field '{p.Name}' (a {s.Lemma} step has {(allowed.Length == 0 ? "none" : string.Join(", ", allowed))})");
        }
        Only(s.Scope, f.Scope, "scope"); Only(s.Claim, f.Claim, "claim"); Only(s.Data, f.Data, "data");
    }

    /// <summary>The lemmas that certify every architecture ModelConfig accepts (proofs/R3-architectures.md): brute force,
    /// box propagation and the pure aggregations. Every other lemma (the crosscoder's) refuses a non-basic model by name.</summary>
    public static readonly IReadOnlySet<string> AllArchitectures = new HashSet<string>(StringComparer.Ordinal)
        { "BF", "BFB", "IP", "IPMEAN", "CL", "CLMEMBERS", "MEAN", "SHARD" };

    /// <summary>The lemmas of crosscoder-tables, which T3 extends to models with normalisations and any activation.</summary>
    static readonly IReadOnlySet<string> TablesLemmas = new HashSet<string>(StringComparer.Ordinal) { "N1", "L2", "T1", "T2", "L1", "INFO" };

    void CheckStep(Step s)
    {
        KnownFields(s);
        if (!LemmasByStrategy[_strategy].Contains(s.Lemma))
            Fail(s, $"lemma '{s.Lemma}' is not a lemma of the strategy '{_strategy}' (proofs/README.md)");
        // crosscoder-tables' lemmas also cover normalisations and every activation (proofs/T3-normalised-tables.md).
        if (!C.IsBasic && !AllArchitectures.Contains(s.Lemma) && !(_strategy == "crosscoder-tables" && C.CrosscoderTablesCover && TablesLemmas.Contains(s.Lemma)))
            Fail(s, $"lemma {s.Lemma} covers only the basic architecture (no normalisation, ReLU, learned positions, global attention scaled by sqrt(d_head)); this model has {string.Join(", ", C.Features())} (the lemmas for every architecture: {string.Join(", ", AllArchitectures)}; proofs/R3-architectures.md)");
        if (_finalMeanStep >= 0) Fail(s, "no step may follow the final MEAN/IPMEAN step");
        var info = s.Lemma switch
        {
            "CT" => CompactTableStep(s),
            "CC" => CompactSequenceStep(s),
            "BF" => BruteForce(s),
            "BFB" => BruteForceBlock(s),
            "MEAN" => Mean(s),
            "IP" => TrivialTable(s),
            "IPMEAN" => TrivialMean(s),
            "N1" => NormsStep(s),
            "L2" => BaseCase(s),
            "L5" or "T1" when s.Inputs.Length > 0 => AttentionStep(s),
            "T1" => TableStep(s),
            "L4" or "T2" => MlpStep(s),
            "L1" => LossStep(s),
            "INFO" => InfoStep(s),
            "CL" => ClusterTable(s),
            "CLMEMBERS" => ClusterMembers(s),
            "SHARD" => ShardStep(s),
            _ => throw new Rejection(s.Id, s.Lemma, $"unknown lemma '{s.Lemma}'"),
        };
        _steps[s.Id] = info;
    }
}
