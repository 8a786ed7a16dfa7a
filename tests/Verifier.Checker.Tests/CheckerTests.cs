using System.Text.Json.Nodes;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Verifier.Bounds;
using Verifier.Checker;
using Verifier.Core;
using Verifier.TestSupport;

namespace Verifier.Checker.Tests;

/// <summary>A random small model, crosscoder and dataset on disk (the shared <see cref="RandomWorld"/>), and a
/// transcript of each strategy.</summary>
sealed class World : IDisposable
{
    readonly RandomWorld _w;
    public string Dir => _w.Dir;
    public ModelWeights Model => _w.Model;
    public TokenDataset Data => _w.Data;
    public string DataPath => _w.DataPath;
    public string CcDir => _w.CcDir;

    public World(ulong seed, bool attnOnly = false)
    {
        _w = new RandomWorld(seed, attnOnly, layers: 1 + (int)(seed % 2));
        _w.RandomCrosscoder(seed + 1, 6, 2);
    }

    public string Transcript(string strategy, int clusters = 2) =>
        _w.Bound(strategy, Strategies.NeedsCrosscoder(strategy) ? CrosscoderWeights.Load(CcDir) : null, clusters, computeTrueLoss: false).Transcript;

    public Verdict Check(string transcript, string? dataPath = null) =>
        TranscriptChecker.Check(transcript, Dir, CcDir, dataPath ?? DataPath);

    public void Dispose() => _w.Dispose();
}

public class CheckerTests
{
    [Property(MaxTest = 12)]
    public bool Every_strategys_transcript_is_accepted(ulong seed, bool attnOnly)
    {
        using var w = new World(seed, attnOnly);
        return Strategies.All.All(s => w.Check(w.Transcript(s)) is { Accepted: true });
    }

    /// <summary>ACC: every strategy certifies an accuracy, never above the true one (ties count as wrong for the
    /// certificate); an identity crosscoder's exact compact bound certifies as much as brute force.</summary>
    [Property(MaxTest = 12)]
    public void Every_strategy_certifies_an_accuracy_never_above_the_true_accuracy(ulong seed, bool attnOnly)
    {
        using var w = new World(seed, attnOnly);
        var (_, accuracy, _) = ReferenceForward.Evaluate(w.Model, w.Data);
        foreach (var s in w.Model.Config.NLayers == 1 ? [.. Strategies.All, .. Strategies.OneLayer] : Strategies.All)
        {
            var v = w.Check(w.Transcript(s));
            Assert.True(v.Accepted, $"{s}: {v.Reason}");
            Assert.NotNull(v.AccuracyLb);
            Assert.True(v.AccuracyLb <= accuracy, $"{s}: certified accuracy {v.AccuracyLb:R} above the true {accuracy:R}");
        }
    }

    /// <summary>Mutations that make a transcript wrong, each applied to a fresh copy. Returns a description or null
    /// when the mutation does not apply to this transcript.</summary>
    static string? Mutate(JsonObject t, Rng r, int kind)
    {
        var steps = t["steps"]!.AsArray();
        JsonObject Step() => steps[r.NextInt(steps.Count)]!.AsObject();
        switch (kind)
        {
            case 0: // lower a positive claim clearly below what it claims (tighten it past its slack)
            {
                var candidates = new List<(JsonNode Parent, object Key, double Value)>();
                void Collect(JsonNode? n, JsonNode parent, object key)
                {
                    if (n is JsonValue v && v.TryGetValue(out double x) && x > 1e-6) candidates.Add((parent, key, x));
                    else if (n is JsonArray a) for (int i = 0; i < a.Count; i++) Collect(a[i], a, i);
                    else if (n is JsonObject o) foreach (var p in o.ToList()) Collect(p.Value, o, p.Key);
                }
                foreach (var s in steps)
                {
                    var claim = s!["claim"]!.AsObject();
                    // In a CL claim the triples are [t, y, bound]: only the bound is a claimed number.
                    if (s["lemma"]!.GetValue<string>() == "CL")
                        foreach (var e in claim["ce"]!.AsArray()) { if (e![2]!.GetValue<double>() > 1e-6) candidates.Add((e, 2, e[2]!.GetValue<double>())); }
                    else Collect(claim, s, "claim");
                }
                if (candidates.Count == 0) return null;
                var (parent, key, value) = candidates[r.NextInt(candidates.Count)];
                double lower = value * (1 - 1e-6) - 1e-9;
                if (parent is JsonArray arr) arr[(int)key] = lower; else parent.AsObject()[(string)key] = lower;
                return $"claim {value:R} lowered to {lower:R}";
            }
            case 1: // point an input at another earlier step
            {
                var withInputs = steps.Where(s => s!["inputs"]!.AsArray().Count > 0).ToList();
                if (withInputs.Count == 0) return null;
                var s = withInputs[r.NextInt(withInputs.Count)]!;
                var inputs = s["inputs"]!.AsArray();
                int k = r.NextInt(inputs.Count), id = s["id"]!.GetValue<int>(), old = inputs[k]!.GetValue<int>();
                if (id < 2) return null;
                int replacement = r.NextInt(id);
                if (replacement == old) replacement = (old + 1) % id;
                inputs[k] = replacement;
                return $"step {id} input {old} → {replacement}";
            }
            case 2: // swap a lemma for another ID
            {
                var s = Step();
                string[] ids = ["BF", "BFB", "MEAN", "IP", "IPMEAN", "N1", "L1", "L2", "L4", "L5", "T1", "T2", "CL", "CLMEMBERS", "INFO", "L3"];
                string old = s["lemma"]!.GetValue<string>(), neu = ids[r.NextInt(ids.Length)];
                if (neu == old) neu = "L3";
                s["lemma"] = neu;
                return $"lemma {old} → {neu}";
            }
            case 3: // alter a step's cost
            {
                var cost = Step()["cost"]!.AsObject();
                long f = cost["flops"]!.GetValue<long>();
                cost["flops"] = f + (r.NextInt(2) == 0 ? 1 : -1) * (1 + r.NextInt(3));
                return "cost altered";
            }
            case 4: // alter an artefact hash
            {
                var arts = t["artefacts"]!.AsObject().ToList();
                var (name, node) = arts[r.NextInt(arts.Count)];
                string h = node!["sha256"]!.GetValue<string>();
                node["sha256"] = (h[0] == 'a' ? 'b' : 'a') + h[1..];
                return $"hash of {name}";
            }
            case 5: // change b0 or the final step
            {
                var result = t["result"]!.AsObject();
                result["b0"] = result["b0"]!.GetValue<double>() * 0.5;
                return "b0 halved";
            }
            case 6: // drop an element of a claimed vector (a shape change)
            {
                var vecs = steps.SelectMany(s => s!["claim"]!.AsObject().Where(p => p.Value is JsonArray a && a.Count > 0).Select(p => p.Value!.AsArray())).ToList();
                if (vecs.Count == 0) return null;
                var v = vecs[r.NextInt(vecs.Count)];
                v.RemoveAt(v.Count - 1);
                return "claimed vector shortened";
            }
            case 7: // remove a step (ids no longer consecutive or references break)
            {
                if (steps.Count < 2) return null;
                steps.RemoveAt(r.NextInt(steps.Count - 1));
                return "step removed";
            }
            case 8: // total cost altered
            {
                var cost = t["cost"]!.AsObject();
                cost["flops"] = cost["flops"]!.GetValue<long>() + 1;
                return "total cost altered";
            }
            default: throw new ArgumentOutOfRangeException(nameof(kind));
        }
    }

    [Property(MaxTest = 10)]
    public void Every_mutation_that_makes_a_transcript_wrong_is_rejected(ulong seed)
    {
        using var w = new World(seed);
        var r = new Rng(seed ^ 0xC0FFEE);
        int tried = 0;
        foreach (var strategy in Strategies.All)
        {
            string path = w.Transcript(strategy);
            Assert.True(w.Check(path).Accepted, $"{strategy}: the unmutated transcript must be accepted");
            string original = File.ReadAllText(path);
            for (int i = 0; i < 27; i++)
            {
                var t = JsonNode.Parse(original)!.AsObject();
                string? what = Mutate(t, r, i % 9);
                if (what is null) continue;
                string mutated = Path.Combine(w.Dir, "mutated.json");
                File.WriteAllText(mutated, t.ToJsonString());
                var v = w.Check(mutated);
                Assert.False(v.Accepted, $"{strategy}: mutation '{what}' was accepted");
                Assert.False(string.IsNullOrWhiteSpace(v.Reason));
                tried++;
            }
        }
        Assert.True(tried > 50);
    }

    /// <summary>The checker binds what it read to the hashes it reports: the artefacts' hashes are of the bytes parsed
    /// (second red team: hashing the files again after loading left a window to swap them), and an accepted verdict names
    /// the SHA-256 of exactly the transcript bytes it read, under which the store records it.</summary>
    [Fact]
    public void Hashes_are_of_the_bytes_the_checker_read()
    {
        using var w = new World(9);
        var m = ModelWeights.Load(w.Dir);
        Assert.Equal(Hashing.Sha256File(Path.Combine(w.Dir, ModelWeights.WeightsFileName)), m.WeightsSha256);
        Assert.Equal(Hashing.Sha256File(Path.Combine(w.Dir, ModelConfig.FileName)), m.ConfigSha256);
        var cc = CrosscoderWeights.Load(w.CcDir);
        Assert.Equal(Hashing.Sha256File(Path.Combine(w.CcDir, CrosscoderWeights.WeightsFileName)), cc.WeightsSha256);
        string path = w.Transcript(Strategies.CrosscoderTables);
        var v = w.Check(path);
        Assert.True(v.Accepted, v.Reason);
        Assert.Equal(Hashing.Sha256File(path), v.TranscriptSha256);
    }

    [Fact]
    public void A_transcript_checked_against_another_dataset_is_rejected()
    {
        using var w = new World(4);
        string path = w.Transcript(Strategies.BruteForce);
        var seqs = w.Data.Sequences.ToList();
        seqs[0] = seqs[0] with { Tokens = seqs[0].Tokens.Select(x => (x + 1) % w.Model.Config.DVocab).ToArray() };
        string other = Path.Combine(w.Dir, "other.jsonl");
        new TokenDataset(seqs).Save(other);
        var v = w.Check(path, other);
        Assert.False(v.Accepted);
        Assert.Contains("dataset", v.Reason);
    }

    [Theory]
    [InlineData("truncate", "truncated or corrupt")]
    [InlineData("type", "must be")]
    [InlineData("unknown-field", "unknown field")]
    [InlineData("forward", "not an earlier step")]
    [InlineData("nan", "not valid JSON")]
    [InlineData("infinity-string", "finite")]
    [InlineData("negative-cost", "non-negative")]
    [InlineData("schema", "schema")]
    [InlineData("order", "expected")]
    [InlineData("empty", "format")]
    [InlineData("duplicate-key", "the key 'b0' appears twice")]
    [InlineData("duplicate-step-key", "the key 'loss_sum' appears twice")]
    [InlineData("trailing", "content after the end")]
    [InlineData("trailing-text", "content after the end")]
    [InlineData("escape", "\\u001b[32m")]
    [InlineData("unknown-claim-field", "claim: unknown field 'bonus'")]
    [InlineData("unknown-scope-field", "scope: unknown field 'shift'")]
    [InlineData("unexpected-advice", "data: unknown field 'features'")]
    public void Malformed_transcripts_are_rejected_with_a_message_never_a_crash(string fault, string expected)
    {
        using var w = new World(7);
        string path = w.Transcript(Strategies.BruteForce);
        string text = File.ReadAllText(path);
        string bad = fault switch
        {
            "truncate" => text[..(text.Length / 2)],
            "type" => text.Replace("\"inputs\":[]", "\"inputs\":\"none\""),
            "unknown-field" => text.Replace("\"lemma\":\"BFB\"", "\"lemma\":\"BFB\",\"note\":1"),
            "forward" => text.Replace("\"id\":0,\"lemma\":\"BFB\",\"inputs\":[]", "\"id\":0,\"lemma\":\"BFB\",\"inputs\":[3]"),
            "nan" => System.Text.RegularExpressions.Regex.Replace(text, "\"loss_sum\":[0-9.eE+-]+", "\"loss_sum\":NaN"),
            "infinity-string" => System.Text.RegularExpressions.Regex.Replace(text, "\"loss_sum\":[0-9.eE+-]+", "\"loss_sum\":\"Infinity\""),
            "negative-cost" => System.Text.RegularExpressions.Regex.Replace(text, "\"flops\":[0-9]+,\"dataset_dependent\"", "\"flops\":-5,\"dataset_dependent\""),
            "schema" => text.Replace("verifier-transcript/1", "verifier-transcript/9"),
            "order" => text.Replace("\"schema\":\"verifier-transcript/1\",", "").Replace("\"cost\":{\"flops\"", "\"schema\":\"verifier-transcript/1\",\"cost\":{\"flops\""),
            "empty" => "",
            "duplicate-key" => System.Text.RegularExpressions.Regex.Replace(text, "\"result\":\\{\"b0\":", "\"result\":{\"b0\":1e-12,\"b0\":"),
            "duplicate-step-key" => System.Text.RegularExpressions.Regex.Replace(text, "\"loss_sum\":", "\"loss_sum\":1e-12,\"loss_sum\":"),
            "trailing" => text + "{\"schema\":1}",
            "trailing-text" => text + "\naccepted",
            "unknown-claim-field" => new System.Text.RegularExpressions.Regex("\"claim\":\\{").Replace(text, "\"claim\":{\"bonus\":0,", 1),
            "unknown-scope-field" => new System.Text.RegularExpressions.Regex("\"scope\":\\{").Replace(text, "\"scope\":{\"shift\":1,", 1),
            "unexpected-advice" => new System.Text.RegularExpressions.Regex("\"cost\":\\{").Replace(text, "\"data\":{\"features\":[]},\"cost\":{", 1),
            "escape" => text.Replace("\"lemma\":\"BFB\"", "\"lemma\":\"\\u001b[32mBFB\""),
            _ => throw new ArgumentException(fault),
        };
        Assert.NotEqual(text, bad);
        string p = Path.Combine(w.Dir, "bad.json");
        File.WriteAllText(p, bad);
        var v = w.Check(p);
        Assert.False(v.Accepted);
        Assert.Contains(expected, v.Reason);
        Assert.DoesNotContain('\u001b', v.Summary);
    }
}

public class IntervalTests
{
    static bool In(R r, Rational x) => Rational.Of(r.Lo) <= x && x <= Rational.Of(r.Hi);

    [Property(MaxTest = 500)]
    public bool The_checkers_intervals_enclose_exact_sums_and_products(NormalFloat a, NormalFloat b, NormalFloat c, NormalFloat d)
    {
        var x = new R(Math.Min(a.Get, b.Get), Math.Max(a.Get, b.Get));
        var y = new R(Math.Min(c.Get, d.Get), Math.Max(c.Get, d.Get));
        foreach (var p in new[] { x.Lo, x.Hi })
            foreach (var q in new[] { y.Lo, y.Hi })
                if (!In(x + y, Rational.Of(p) + Rational.Of(q)) || !In(x * y, Rational.Of(p) * Rational.Of(q)) || !In(x - y, Rational.Of(p) + Rational.Of(-q))) return false;
        return true;
    }

    [Property(MaxTest = 500)]
    public bool The_certified_accuracy_is_the_exact_quotient_rounded_down(PositiveInt positions, NonNegativeInt errors)
    {
        long p = positions.Get; double e = Math.Min(errors.Get, p);
        double q = Accuracy.Lower(e, p);
        var exact = Rational.Of(p - e);
        return Rational.Of(q) * Rational.Of(p) <= exact && !(Rational.Of(Math.BitIncrement(q)) * Rational.Of(p) <= exact) && (e != 0 || q == 1);
    }

    [Property(MaxTest = 300)]
    public bool Upward_operations_are_never_below_the_exact_result(PositiveInt a, PositiveInt b)
    {
        double x = a.Get / 7.0, y = b.Get / 3.0;
        return Rational.Of(x) + Rational.Of(y) <= Rational.Of(U.Add(x, y)) && Rational.Of(x) * Rational.Of(y) <= Rational.Of(U.Mul(x, y))
               && Rational.Of(x) <= Rational.Of(U.Div(x, y)) * Rational.Of(y);
    }
}
