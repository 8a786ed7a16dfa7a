using System.Diagnostics;
using System.Text.Json;
using Verifier.Core;

namespace Verifier.Checker;

/// <summary>The outcome: accepted, or the first step that could not be certified with the reason.</summary>
public sealed record Verdict(bool Accepted, string Reason, int? Step, string? Lemma, double? Claimed, double? Certified,
    int StepsChecked, long CheckerFlops, double Seconds, double? B0, string Strategy)
{
    public string Summary => Accepted
        ? $"accepted: mean cross-entropy ≤ {B0:R} ({Strategy}, {StepsChecked} steps)"
        : $"rejected at step {Step?.ToString() ?? "-"} ({Lemma ?? "-"}): {Reason}";
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
        ["brute-force"] = ["BF", "MEAN"],
        ["trivial"] = ["IP", "IPMEAN"],
        ["crosscoder-exhaustive"] = ["N1", "IP", "L2", "L5", "L4", "L1", "MEAN"],
        ["crosscoder-tables"] = ["N1", "IP", "T1", "L2", "T2", "L1", "INFO", "MEAN"],
        ["clustered"] = ["CL", "CLMEMBERS", "MEAN"],
        ["crosscoder-compact"] = ["CT", "CC", "MEAN"],
        ["mixed"] = ["CT", "CC", "BF", "MEAN"],
    };

    readonly ModelWeights _w;
    readonly Forward _f;
    readonly CrosscoderWeights? _cc;
    readonly TokenDataset _data;
    readonly Dictionary<int, Info> _steps = new();
    string _strategy = "";
    long _flopsDep, _flopsIndep, _ownFlops;
    double _adviceBits;
    readonly HashSet<int> _featuresSeen = [];

    /// <summary>What later steps may use of an earlier one.</summary>
    sealed class Info
    {
        public required string Lemma;
        public int Sequence = -1;
        public int Site = -1;
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
    public static Verdict Check(string transcriptPath, string modelDir, string? crosscoderDir, string dataPath, IProgress<long>? progress = null)
    {
        var sw = Stopwatch.StartNew();
        var w = ModelWeights.Load(modelDir);
        var data = TokenDataset.Load(dataPath, w.Config);
        var cc = crosscoderDir is null ? null : CrosscoderWeights.Load(crosscoderDir);
        if (!File.Exists(transcriptPath)) throw new InvalidInputException(transcriptPath, "file", "does not exist");
        var checker = new TranscriptChecker(w, cc, data);
        int stepsChecked = 0; double? b0 = null;
        Step? current = null;
        try
        {
            using var js = new JsonStream(File.OpenRead(transcriptPath));
            b0 = checker.Run(js, modelDir, crosscoderDir, dataPath, s => { current = s; stepsChecked = s.Id + 1; if (s.Id % 256 == 0) progress?.Report(js.BytesRead); });
            return new Verdict(true, "every claim certified", null, null, null, null, stepsChecked, checker._ownFlops, sw.Elapsed.TotalSeconds, b0, checker._strategy);
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

    /// <summary>A claim is accepted only if it is at least the certified upper end.</summary>
    void Certify(Step s, string what, double claimed, double certified)
    {
        if (!(claimed >= certified))
            throw new Rejection(s.Id, s.Lemma, $"{what}: claimed {claimed:R} is below the certified {certified:R}", claimed, certified);
    }

    void Cost(Step s, long own, bool datasetDependent)
    {
        if (s.Flops != own) throw new Rejection(s.Id, s.Lemma, $"cost: the step claims {s.Flops} FLOPs, the checker counts {own} (spec/costs.md)");
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
                        var step = Step.Parse(doc.RootElement, stepCount++);
                        onStep(step);
                        CheckStep(step);
                    }
                continue;
            }
            using var value = js.Value();
            var e = value.RootElement;
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
                    if (_strategy is not ("brute-force" or "trivial") && _cc is null) throw new CheckFailure("artefacts", $"the strategy '{_strategy}' needs the crosscoder (--crosscoder)");
                    break;
                case "interactions":
                    if (e.ValueKind != JsonValueKind.Array) throw new CheckFailure("format", "'interactions' must be an array");
                    break;
                case "result": b0 = CheckResult(e, stepCount); break;
                case "cost": CheckCost(e); break;
            }
        }
        if (js.PropertyName() != "") throw new CheckFailure("format", "fields after 'cost' (the schema is closed)");
        return b0;
    }

    void CheckArtefacts(JsonElement e, string modelDir, string? ccDir)
    {
        var expected = new Dictionary<string, Func<string>>
        {
            ["model_weights"] = () => Hashing.Sha256File(Path.Combine(modelDir, ModelWeights.WeightsFileName)),
            ["model_config"] = () => Hashing.Sha256File(Path.Combine(modelDir, ModelConfig.FileName)),
            ["dataset"] = () => _data.ContentHash(),
        };
        if (ccDir is not null)
        {
            expected["crosscoder_weights"] = () => Hashing.Sha256File(Path.Combine(ccDir, CrosscoderWeights.WeightsFileName));
            expected["crosscoder_config"] = () => Hashing.Sha256File(Path.Combine(ccDir, CrosscoderConfig.FileName));
        }
        if (e.ValueKind != JsonValueKind.Object) throw new CheckFailure("format", "'artefacts' must be an object");
        var named = new HashSet<string>();
        foreach (var p in e.EnumerateObject())
        {
            if (p.Name is not ("model_weights" or "model_config" or "dataset" or "crosscoder_weights" or "crosscoder_config"))
                throw new CheckFailure("artefacts", $"unknown artefact '{p.Name}'");
            if (p.Value.ValueKind != JsonValueKind.Object || !p.Value.TryGetProperty("sha256", out var h) || h.ValueKind != JsonValueKind.String)
                throw new CheckFailure("artefacts", $"{p.Name}.sha256 must be a string");
            named.Add(p.Name);
            if (!expected.TryGetValue(p.Name, out var actual)) throw new CheckFailure("artefacts", $"the transcript names {p.Name} but no such file was given (--crosscoder?)");
            string have = actual();
            if (!string.Equals(h.GetString(), have, StringComparison.Ordinal))
                throw new CheckFailure("artefacts", $"{p.Name}: the transcript names SHA-256 {h.GetString()}, the file given has {have}");
        }
        foreach (var role in new[] { "model_weights", "model_config", "dataset" })
            if (!named.Contains(role)) throw new CheckFailure("artefacts", $"missing artefact '{role}'");
    }

    int _finalMeanStep = -1;
    double _finalB0;

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

    void CheckStep(Step s)
    {
        if (!LemmasByStrategy[_strategy].Contains(s.Lemma))
            Fail(s, $"lemma '{s.Lemma}' is not a lemma of the strategy '{_strategy}' (proofs/README.md)");
        if (_finalMeanStep >= 0) Fail(s, "no step may follow the final MEAN/IPMEAN step");
        var info = s.Lemma switch
        {
            "CT" => CompactTableStep(s),
            "CC" => CompactSequenceStep(s),
            "BF" when _strategy == "mixed" => MixedBruteForce(s),
            "MEAN" when _strategy is "crosscoder-compact" or "mixed" => CompactMean(s),
            "BF" => BruteForce(s),
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
            _ => throw new Rejection(s.Id, s.Lemma, $"unknown lemma '{s.Lemma}'"),
        };
        _steps[s.Id] = info;
    }
}
