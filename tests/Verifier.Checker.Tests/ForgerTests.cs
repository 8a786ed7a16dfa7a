using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Verifier.Bounds;
using Verifier.Checker;
using Verifier.Core;
using Verifier.TestSupport;

namespace Verifier.Checker.Tests;

/// <summary>A forger with the checker as its oracle (spec/checker.md §4). It starts from an honest transcript, rewires
/// its step graph (inputs, duplicates, reorders, drops, scopes) and its advice (features moved between steps and
/// sequences, forged, extra advice steps), then lowers every per-sequence claim to zero and raises each claim, cost and
/// total only as far as the checker certifies it, until the checker accepts or rejects the transcript for a reason that
/// no number can repair. So only the checker's logic is tested: an accepted transcript is the tightest one the checker
/// lets through for that graph and that advice, and its b₀ must never be below the true loss.</summary>
sealed class Forger(RandomWorld world, string ccDir)
{
    public int Accepted, Rejected, Repairs;

    public Verdict Check(JsonObject t, string? cc = null)
    {
        string path = Path.Combine(world.Dir, "forged.json");
        File.WriteAllText(path, t.ToJsonString());
        return TranscriptChecker.Check(path, world.Dir, cc ?? ccDir, world.DataPath);
    }

    // ---- the step graph ----------------------------------------------------------------------------------------------
    static void Renumber(JsonArray steps, Func<int, int> map)
    {
        foreach (var s in steps)
        {
            s!["id"] = map(s["id"]!.GetValue<int>());
            var inputs = s["inputs"]!.AsArray();
            for (int k = 0; k < inputs.Count; k++) inputs[k] = map(inputs[k]!.GetValue<int>());
        }
    }

    /// <summary>Inserts <paramref name="step"/> at <paramref name="at"/>; its own inputs are in the old numbering.</summary>
    public static void Insert(JsonArray steps, int at, JsonObject step)
    {
        Renumber(steps, i => i >= at ? i + 1 : i);
        step["id"] = at;
        steps.Insert(at, step);
    }

    static void Remove(JsonArray steps, int at)
    {
        steps.RemoveAt(at);
        Renumber(steps, i => i > at ? i - 1 : i == at ? Math.Max(0, at - 1) : i);
    }

    static void Swap(JsonArray steps, int a)
    {
        var x = steps[a]!; var y = steps[a + 1]!;
        steps.RemoveAt(a + 1); steps.RemoveAt(a);
        steps.Insert(a, y.DeepClone()); steps.Insert(a + 1, x.DeepClone());
        Renumber(steps, i => i == a ? a + 1 : i == a + 1 ? a : i);
    }

    static string Lemma(JsonNode s) => s["lemma"]!.GetValue<string>();
    static List<JsonObject> Of(JsonArray steps, params string[] lemmas) =>
        steps.Where(s => lemmas.Contains(Lemma(s!))).Select(s => s!.AsObject()).ToList();
    static T Pick<T>(IReadOnlyList<T> xs, Rng r) => xs[r.NextInt(xs.Count)];

    /// <summary>One structural or advice mutation; null when it does not apply to this transcript.</summary>
    public string? Mutate(JsonObject t, Rng r, int kind)
    {
        var steps = t["steps"]!.AsArray();
        switch (kind)
        {
            case 0: // an input pointed at any earlier step
            case 1: // … or at another step of the same lemma (advice of another sequence, another ε, another IP row)
            {
                var withInputs = Of(steps, steps.Select(s => Lemma(s!)).Distinct().ToArray()).Where(s => s["inputs"]!.AsArray().Count > 0).ToList();
                if (withInputs.Count == 0) return null;
                var s = Pick(withInputs, r);
                var inputs = s["inputs"]!.AsArray();
                int k = r.NextInt(inputs.Count), id = s["id"]!.GetValue<int>(), old = inputs[k]!.GetValue<int>();
                var same = Enumerable.Range(0, id).Where(i => i != old && (kind == 0 || Lemma(steps[i]!) == Lemma(steps[old]!))).ToList();
                if (same.Count == 0) return null;
                inputs[k] = Pick(same, r);
                return $"step {id} input {k}: {old} → {inputs[k]}";
            }
            case 2: // a step duplicated in place
            {
                int i = r.NextInt(steps.Count - 1);
                Insert(steps, i + 1, steps[i]!.DeepClone().AsObject());
                return $"step {i} duplicated";
            }
            case 3: // two neighbours swapped
            {
                if (steps.Count < 3) return null;
                int i = r.NextInt(steps.Count - 2);
                Swap(steps, i);
                return $"steps {i} and {i + 1} swapped";
            }
            case 4: // a step dropped, references to it moved to its predecessor
            {
                if (steps.Count < 3) return null;
                int i = r.NextInt(steps.Count - 1);
                Remove(steps, i);
                return $"step {i} dropped";
            }
            case 5: // advice swapped between two sequences' L2 (or CC) steps
            {
                var l2 = Of(steps, "L2", "CC");
                if (l2.Count < 2) return null;
                var a = Pick(l2, r); var b = Pick(l2, r);
                if (a == b) return null;
                if (a["data"]?["features"] is null || b["data"]?["features"] is null) return null;
                var fa = a["data"]!["features"]!.DeepClone(); a["data"]!["features"] = b["data"]!["features"]!.DeepClone(); b["data"]!["features"] = fa;
                return "advice swapped between sequences";
            }
            case 6: // advice forged: values scaled, zeroed, negated, or a token's list emptied
            {
                var l2 = Of(steps, "L2", "CC").Where(x => x["data"]?["features"] is JsonArray).ToList();
                if (l2.Count == 0) return null;
                var f = Pick(l2, r)["data"]!["features"]!.AsArray();
                double scale = Pick(new[] { 0.0, -1.0, 40.0, 1e-3, 1e6 }, r);
                foreach (var tok in f)
                    foreach (var p in tok!.AsArray()) p![1] = p[1]!.GetValue<double>() * scale;
                if (r.NextInt(3) == 0 && f.Count > 0) f[r.NextInt(f.Count)] = new JsonArray();
                return $"advice scaled by {scale}";
            }
            case 7: // a second L2 step for a sequence (forged advice), and chain steps re-bound to it
            {
                var l2 = Of(steps, "L2");
                if (l2.Count == 0) return null;
                var root = Pick(l2, r);
                int at = root["id"]!.GetValue<int>() + 1;
                var extra = root.DeepClone().AsObject();
                var donor = Pick(l2, r)["data"]!["features"]!.AsArray();
                var f = extra["data"]!["features"]!.AsArray();
                for (int tok = 0; tok < f.Count; tok++) f[tok] = tok < donor.Count ? donor[tok]!.DeepClone() : new JsonArray();
                Insert(steps, at, extra);
                int q = root["scope"]!["sequence"]!.GetValue<int>();
                foreach (var s in steps.Skip(at + 1).Where(s => s!["scope"]!["sequence"]?.GetValue<int>() == q && s["inputs"]!.AsArray().Count > 1 && Lemma(s) != "MEAN"))
                    if (r.NextInt(2) == 0) s!["inputs"]![1] = at;
                return $"second L2 for sequence {q}, chain re-bound";
            }
            case 8: // a scope field moved to another value
            {
                var s = Pick(steps.Select(x => x!.AsObject()).ToList(), r);
                var ints = s["scope"]!.AsObject().Where(p => p.Value is JsonValue v && v.TryGetValue(out int _)).Select(p => p.Key).ToList();
                if (ints.Count == 0) return null;
                string key = Pick(ints, r);
                s["scope"]![key] = Math.Max(0, s["scope"]![key]!.GetValue<int>() + Pick(new[] { -1, 1, 2 }, r));
                return $"scope.{key} of step {s["id"]} changed";
            }
            case 9: // a cluster member moved or duplicated
            {
                var cm = Of(steps, "CLMEMBERS");
                if (cm.Count == 0) return null;
                var a = Pick(cm, r)["data"]!["members"]!.AsArray(); var b = Pick(cm, r)["data"]!["members"]!.AsArray();
                if (a.Count == 0) return null;
                var m = a[r.NextInt(a.Count)]!.GetValue<int>();
                if (r.NextInt(2) == 0) a.Remove(a.First(x => x!.GetValue<int>() == m));
                b.Add(m);
                return "cluster member moved";
            }
            case 10: // other advice: MLP gates flipped, attention centres moved
            {
                var t1 = Of(steps, "T1").Where(s => s["data"]?["gates"] is not null).ToList();
                var withCentres = Of(steps, "T1", "L5").Where(s => s["data"]?["centres"] is not null).ToList();
                if (t1.Count > 0 && r.NextInt(2) == 0)
                {
                    var gates = t1[0]["data"]!["gates"]!.AsArray().SelectMany(l => l!.AsArray()).ToList();
                    if (gates.Count == 0) return null;
                    var g = gates[r.NextInt(gates.Count)]!;
                    var parent = g.Parent!.AsArray(); int idx = parent.IndexOf(g);
                    parent[idx] = 1 - g.GetValue<int>();
                    return "gate flipped";
                }
                if (withCentres.Count == 0) return null;
                foreach (var v in Pick(withCentres, r)["data"]!["centres"]!.AsArray().SelectMany(h => h!.AsArray()).SelectMany(c => c!.AsArray()).ToList())
                    v!.Parent!.AsArray()[v.Parent.AsArray().IndexOf(v)] = v.GetValue<double>() * -3 + 1;
                return "centres moved";
            }
            case 11: // BFB blocks: one block's range shrunk, grown, shifted or emptied (gaps, overlaps, sequences left out)
            {
                var blocks = Of(steps, "BFB");
                if (blocks.Count == 0) return null;
                var sc = Pick(blocks, r)["scope"]!;
                int first = sc["first"]!.GetValue<int>(), end = sc["end"]!.GetValue<int>();
                (int f, int e) = r.NextInt(5) switch
                {
                    0 => (first, end - 1), 1 => (first, end + 1), 2 => (first + 1, end + 1), 3 => (Math.Max(0, first - 1), end), _ => (first, first),
                };
                sc["first"] = f; sc["end"] = e;
                return $"BFB block [{first}, {end}) → [{f}, {e})";
            }
            default: throw new ArgumentOutOfRangeException(nameof(kind));
        }
    }

    public const int Kinds = 12;

    // ---- claims --------------------------------------------------------------------------------------------------------
    static readonly string[] PerSequence = ["BF", "BFB", "L2", "L5", "T1", "L4", "T2", "L1", "CLMEMBERS", "MEAN", "IPMEAN", "CC", "SHARD"];

    /// <summary>Every number in the per-sequence claims set to zero (and, with <paramref name="tables"/>, in the
    /// dataset-independent ones too): the repair raises each only to what the checker certifies.</summary>
    public static void Zero(JsonObject t, bool tables)
    {
        foreach (var s in t["steps"]!.AsArray())
        {
            if (!tables && !PerSequence.Contains(Lemma(s!))) continue;
            bool cl = Lemma(s!) == "CL";
            void Z(JsonNode? n)
            {
                if (n is JsonArray a) { for (int i = 0; i < a.Count; i++) if (a[i] is JsonValue) a[i] = 0.0; else Z(a[i]); }
                else if (n is JsonObject o) foreach (var p in o.ToList()) if (p.Value is JsonValue) o[p.Key] = 0.0; else Z(p.Value);
            }
            if (cl) foreach (var e in s!["claim"]!["ce"]!.AsArray()) e![2] = 0.0;
            else Z(s!["claim"]);
        }
        t["result"]!["b0"] = 0.0;
    }

    static bool Replace(JsonNode? n, double from, double to, bool cl)
    {
        if (cl)
        {
            foreach (var e in n!["ce"]!.AsArray())
                if (e![2]!.GetValue<double>() == from) { e[2] = to; return true; }
            return false;
        }
        if (n is JsonArray a)
        {
            for (int i = 0; i < a.Count; i++)
                if (a[i] is JsonValue v && v.TryGetValue(out double x) && x == from) { a[i] = to; return true; }
                else if (Replace(a[i], from, to, false)) return true;
        }
        else if (n is JsonObject o)
            foreach (var p in o.ToList())
                if (p.Value is JsonValue v && v.TryGetValue(out double x) && x == from) { o[p.Key] = to; return true; }
                else if (Replace(p.Value, from, to, false)) return true;
        return false;
    }

    /// <summary>Raises claims, costs and totals to the checker's certified values until it accepts, or rejects for a
    /// reason no number repairs (the graph or the advice).</summary>
    public Verdict Repair(JsonObject t, string? cc = null, int maxRounds = 4000)
    {
        var steps = t["steps"]!.AsArray();
        for (int round = 0; ; round++)
        {
            var v = Check(t, cc);
            if (v.Accepted || round == maxRounds) return v;
            Repairs++;
            if (v.Step is int id && id < steps.Count && v.Claimed is double c && v.Certified is double cert && double.IsFinite(cert) && steps[id]!["id"]!.GetValue<int>() == id)
            {
                var s = steps[id]!;
                if (v.Reason.StartsWith("cost:")) { s["cost"]!["flops"] = (long)cert; continue; }
                if (Replace(s["claim"], c, cert, Lemma(s) == "CL")) continue;
                return v;
            }
            var stepCost = Regex.Match(v.Reason, @"^cost: the step claims \d+ FLOPs, the checker counts (\d+)");
            if (v.Step is int sid && sid < steps.Count && stepCost.Success) { steps[sid]!["cost"]!["flops"] = long.Parse(stepCost.Groups[1].Value); continue; }
            var cost = t["cost"]!.AsObject();
            var match = Regex.Match(v.Reason, @"^cost: (advice_bits|bits) \S+ ≠ the checker's (\S+)$");
            if (match.Success) { cost[match.Groups[1].Value] = double.Parse(match.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture); continue; }
            if (v.Reason.StartsWith("cost: flops"))
            {
                long dep = 0, indep = 0;
                foreach (var s in steps)
                    if (s!["cost"]!["dataset_dependent"]!.GetValue<bool>()) dep += s["cost"]!["flops"]!.GetValue<long>();
                    else indep += s["cost"]!["flops"]!.GetValue<long>();
                cost["flops_dataset_dependent"] = dep; cost["flops_dataset_independent"] = indep; cost["flops"] = dep + indep;
                continue;
            }
            if (v.Reason.StartsWith("result:") && steps.LastOrDefault(s => Lemma(s!) is "MEAN" or "IPMEAN") is { } mean)
            {
                t["result"]!["final_step"] = mean["id"]!.GetValue<int>();
                t["result"]!["b0"] = mean["claim"]!["b0"]!.GetValue<double>();
                if (v.Reason.Contains("differs") || v.Reason.Contains("final_step")) continue;
            }
            return v;
        }
    }

    /// <summary>The forger's law: whatever it built, an accepted b₀ is at least the true loss, and a certified accuracy
    /// at most the true accuracy.</summary>
    public void Judge(Verdict v, double trueLoss, string what, double trueAccuracy = 1)
    {
        if (!v.Accepted) { Rejected++; return; }
        Accepted++;
        Assert.True(v.B0 >= trueLoss * (1 - 1e-9) - 1e-12, $"FORGED: {what} was accepted with b₀ = {v.B0:R} below the true loss {trueLoss:R}");
        Assert.True(!(v.AccuracyLb > trueAccuracy), $"FORGED: {what} was accepted with accuracy ≥ {v.AccuracyLb:R} above the true accuracy {trueAccuracy:R}");
    }
}

public class ForgerTests
{
    static readonly string[] CrosscoderStrategies = [Strategies.CrosscoderTables, Strategies.CrosscoderExhaustive];

    /// <summary>One forging campaign on a random world: every strategy, <paramref name="tries"/> forgeries each.</summary>
    static (int Accepted, int Rejected, int Repairs) Campaign(ulong seed, int tries)
    {
        int layers = 1 + (int)(seed % 2);
        using var world = new RandomWorld(seed, attnOnly: seed % 3 == 2, layers: layers);
        var cc = seed % 4 == 0 ? world.IdentityCrosscoder() : world.RandomCrosscoder(seed + 1, 6, 2);
        var (trueLoss, trueAccuracy, _) = ReferenceForward.Evaluate(world.Model, world.Data);
        var forger = new Forger(world, world.CcDir);
        var r = new Rng(seed ^ 0xF0F0);
        // The compact strategies are for one-layer models (two layers are refused by name).
        foreach (var strategy in layers == 1 ? [.. Strategies.All, .. Strategies.OneLayer] : Strategies.All)
        {
            var honest = JsonNode.Parse(File.ReadAllText(world.Bound(strategy, Strategies.NeedsCrosscoder(strategy) ? cc : null, clusters: 2, computeTrueLoss: false).Transcript))!.AsObject();
            for (int i = 0; i < tries; i++)
            {
                var t = honest.DeepClone().AsObject();
                var what = new List<string>();
                int n = 1 + r.NextInt(3);
                for (int k = 0; k < n; k++) if (forger.Mutate(t, r, r.NextInt(Forger.Kinds)) is { } w) what.Add(w);
                Forger.Zero(t, tables: r.NextInt(3) == 0);
                forger.Judge(forger.Repair(t), trueLoss, $"{strategy} seed {seed}: {string.Join("; ", what)}", trueAccuracy);
            }
        }
        return (forger.Accepted, forger.Rejected, forger.Repairs);
    }

    [Property(MaxTest = 6)]
    public void The_forger_never_gets_a_transcript_accepted_below_the_true_loss(PositiveInt seed)
    {
        var (accepted, rejected, _) = Campaign((ulong)seed.Get, tries: 3);
        Assert.True(accepted + rejected > 0);
    }

    /// <summary>The repair alone (no mutation) must reach acceptance: otherwise the forger tests nothing.</summary>
    [Fact]
    public void Zeroed_honest_transcripts_are_repaired_to_acceptance_at_or_above_the_true_loss()
    {
        using var world = new RandomWorld(11, layers: 2);
        var cc = world.RandomCrosscoder(12, 6, 2);
        double trueLoss = ReferenceForward.Evaluate(world.Model, world.Data).Loss;
        var forger = new Forger(world, world.CcDir);
        foreach (var strategy in Strategies.All)
        {
            var t = JsonNode.Parse(File.ReadAllText(world.Bound(strategy, Strategies.NeedsCrosscoder(strategy) ? cc : null, clusters: 2, computeTrueLoss: false).Transcript))!.AsObject();
            Forger.Zero(t, tables: true);
            var v = forger.Repair(t);
            Assert.True(v.Accepted, $"{strategy}: {v.Reason}");
            Assert.True(v.B0 >= trueLoss * (1 - 1e-9) - 1e-12);
        }
    }

    /// <summary>Soak: VERIFIER_FORGER_SOAK=N runs N campaigns (e.g. `VERIFIER_FORGER_SOAK=400 dotnet test
    /// tests/Verifier.Checker.Tests -c Release --filter Forger_soak`); skipped (one campaign) otherwise.</summary>
    [Fact]
    public void Forger_soak()
    {
        int n = int.TryParse(Environment.GetEnvironmentVariable("VERIFIER_FORGER_SOAK"), out int x) ? x : 1;
        int accepted = 0, rejected = 0, repairs = 0;
        for (int i = 0; i < n; i++)
        {
            var (a, b, c) = Campaign(1000 + (ulong)i, tries: 4);
            accepted += a; rejected += b; repairs += c;
        }
        Console.WriteLine($"forger soak: {n} worlds, {accepted + rejected} forgeries ({accepted} accepted, all ≥ the true loss; {rejected} rejected), {repairs} repair rounds");
    }

    /// <summary>Soundness soak (issue 11 target 4): VERIFIER_SOUNDNESS_SOAK=N random worlds (1–2 layers, with or without MLP,
    /// random crosscoders), every strategy (the compact ones on one-layer worlds): each transcript accepted, b₀ ≥ the true
    /// loss, certified accuracy ≤ the true accuracy. One world when unset.</summary>
    [Fact]
    public void Soundness_soak()
    {
        int n = int.TryParse(Environment.GetEnvironmentVariable("VERIFIER_SOUNDNESS_SOAK"), out int x) ? x : 1;
        int bounds = 0;
        for (int i = 0; i < n; i++)
        {
            ulong seed = 5000 + (ulong)i;
            int layers = 1 + (int)(seed % 2);
            using var world = new RandomWorld(seed, attnOnly: seed % 3 == 2, layers: layers);
            var cc = world.RandomCrosscoder(seed + 1, 6, 2);
            var (loss, accuracy, _) = ReferenceForward.Evaluate(world.Model, world.Data);
            foreach (var strategy in layers == 1 ? [.. Strategies.All, .. Strategies.OneLayer] : Strategies.All)
            {
                var r = world.Bound(strategy, Strategies.NeedsCrosscoder(strategy) ? cc : null, clusters: 2, computeTrueLoss: false);
                var v = TranscriptChecker.Check(r.Transcript, world.Dir, world.CcDir, world.DataPath);
                Assert.True(v.Accepted, $"world {seed}, {strategy}: {v.Reason}");
                Assert.True(v.B0 >= loss * (1 - 1e-9) - 1e-12, $"world {seed}, {strategy}: b₀ {v.B0:R} below the true loss {loss:R}");
                Assert.True(!(v.AccuracyLb > accuracy), $"world {seed}, {strategy}: accuracy ≥ {v.AccuracyLb:R} above the true {accuracy:R}");
                bounds++;
            }
        }
        Console.WriteLine($"soundness soak: {n} random worlds, {bounds} bounds, every one accepted, b₀ ≥ true loss, accuracy ≤ true accuracy");
    }

    // ---- the two forgeries of issue 10, built whole -----------------------------------------------------------------------

    /// <summary>Features of the identity crosscoder (W_dec = [I; −I] over every site) that decode to <paramref name="a"/>
    /// at site <paramref name="site"/> and to 0 elsewhere.</summary>
    static IEnumerable<JsonNode> Encode(double[] a, int site, int sites)
    {
        int d = a.Length;
        for (int i = 0; i < d; i++)
            if (a[i] > 0) yield return new JsonArray(site * d + i, a[i]);
            else if (a[i] < 0) yield return new JsonArray(sites * d + site * d + i, -a[i]);
    }

    [Fact]
    public void Advice_rebinding_forgery_of_issue_10_is_rejected()
    {
        // One layer with an MLP; the identity crosscoder lets advice name any vector at any site.
        using var world = new RandomWorld(5, layers: 1);
        var cc = world.IdentityCrosscoder();
        var c = world.Model.Config; var w = world.Model; int d = c.DModel, S = c.SiteNames().Count;
        double trueLoss = ReferenceForward.Evaluate(w, world.Data).Loss;
        var t = JsonNode.Parse(File.ReadAllText(world.Bound(Strategies.CrosscoderTables, cc, computeTrueLoss: false).Transcript))!.AsObject();
        var steps = t["steps"]!.AsArray();

        // The residual after a block applied to the zero vector: attention sees b_Q, b_K, b_V (uniform pattern).
        double[] attn0 = new double[d], mlp0 = new double[d];
        for (int i = 0; i < d; i++)
        {
            double a = w["blocks.0.attn.b_O"].Data[i];
            for (int h = 0; h < c.NHeads; h++) for (int j = 0; j < c.DHead; j++) a += w["blocks.0.attn.b_V"].Data[h * c.DHead + j] * w["blocks.0.attn.W_O"].Data[(h * c.DHead + j) * d + i];
            attn0[i] = a;
            double u = w["blocks.0.mlp.b_out"].Data[i];
            for (int m = 0; m < c.DMlp; m++) u += Math.Max(0, w["blocks.0.mlp.b_in"].Data[m]) * w["blocks.0.mlp.W_out"].Data[m * d + i];
            mlp0[i] = u;
        }
        double forgedLoss = 0; long positions = 0;
        foreach (var root in Of(steps, "L2"))
        {
            int q = root["scope"]!["sequence"]!.GetValue<int>();
            var seq = world.Data.Sequences[q];
            int T = seq.Tokens.Length;
            // a'_mid = attn(0) over a'⁰ = 0, a'_post = MLP(0) over a'_mid = 0: both blocks' δ vanish; at the end a
            // large multiple of the label's unembedding column, so that CE(z') ≈ 0.
            var final = Enumerable.Range(0, T).Select(tok =>
            {
                if (seq.Labels[tok] < 0) return new double[d];
                int y = seq.Labels[tok];
                var u = Enumerable.Range(0, d).Select(i => w["unembed.W_U"].Data[i * c.DVocabOut + y]).ToArray();
                var best = Enumerable.Range(0, 8).Select(e => Math.Pow(4, e)).MinBy(lam => Ce(w, u.Select(x => x * lam).ToArray(), y));
                forgedLoss += Ce(w, u.Select(x => x * best).ToArray(), y); positions++;
                return u.Select(x => x * best).ToArray();
            }).ToArray();
            JsonObject Advice(Func<int, IEnumerable<JsonNode>> perToken) => new()
            {
                ["id"] = 0, ["lemma"] = "L2", ["inputs"] = new JsonArray(), ["scope"] = root["scope"]!.DeepClone(),
                ["claim"] = new JsonObject { ["eps"] = new JsonArray(Enumerable.Repeat(0.0, T).Select(x => (JsonNode)x).ToArray()) },
                ["data"] = new JsonObject { ["features"] = new JsonArray(Enumerable.Range(0, T).Select(tok => (JsonNode)new JsonArray(perToken(tok).ToArray())).ToArray()) },
                ["cost"] = new JsonObject { ["flops"] = 0, ["dataset_dependent"] = true },
            };
            int at = root["id"]!.GetValue<int>() + 1;
            var forged = new[] { Advice(_ => Encode(attn0, 1, S)), Advice(_ => Encode(mlp0, 2, S)), Advice(tok => Encode(final[tok], 2, S)) };
            for (int k = 0; k < 3; k++) Forger.Insert(steps, at + k, forged[k]);
            var chain = steps.Where(s => s!["scope"]!["sequence"]?.GetValue<int>() == q && Lemma(s!) is "T1" or "T2" or "L1").ToList();
            for (int k = 0; k < 3; k++) chain[k]!["inputs"]![1] = at + k;
        }
        Assert.True(forgedLoss / positions < trueLoss, "the forged advice must claim less than the true loss, or the test proves nothing");
        Forger.Zero(t, tables: false);
        var forger = new Forger(world, world.CcDir);
        var v = forger.Repair(t);
        Assert.False(v.Accepted, $"forged b₀ {v.B0:R} accepted; true loss {trueLoss:R}");
        Assert.Contains("already has its L2 step", v.Reason);
    }

    static double Ce(ModelWeights w, double[] h, int y)
    {
        int d = h.Length, V = w.Config.DVocabOut;
        var z = Enumerable.Range(0, V).Select(o => w["unembed.b_U"].Data[o] + Enumerable.Range(0, d).Sum(i => h[i] * w["unembed.W_U"].Data[i * V + o])).ToArray();
        double m = z.Max();
        return m + Math.Log(z.Sum(x => Math.Exp(x - m))) - z[y];
    }

    static string Lemma(JsonNode s) => s["lemma"]!.GetValue<string>();
    static List<JsonObject> Of(JsonArray steps, string lemma) => steps.Where(s => Lemma(s!) == lemma).Select(s => s!.AsObject()).ToList();

    [Fact]
    public void A_crosscoder_of_another_d_model_is_refused_before_any_arithmetic()
    {
        // Issue 10 case 2: a crosscoder of d_model + 1 on the model; a transcript naming its hashes, claiming b₀ = 1e-4.
        using var world = new RandomWorld(3, layers: 1);
        var c = world.Model.Config; var sites = c.SiteNames(); int S = sites.Count, d = c.DModel + 1, n = 4;
        var cfg = new CrosscoderConfig(n, d, sites, CrosscoderModes.TopK, 2, null, Enumerable.Repeat(1.0, S).ToArray(), new string('0', 64), null, 0);
        var tensors = CrosscoderWeights.Shapes(cfg).ToDictionary(s => s.Name, s => new NamedTensor(s.Name, s.Shape, new double[s.Shape.Aggregate(1, (a, b) => a * b)], "F64"));
        string other = Path.Combine(world.Dir, "wide-cc");
        Directory.CreateDirectory(other);
        new CrosscoderWeights(cfg, tensors).SaveInto(other);
        var honest = JsonNode.Parse(File.ReadAllText(world.Bound(Strategies.CrosscoderTables, world.RandomCrosscoder(4, 4, 2), computeTrueLoss: false).Transcript))!.AsObject();
        honest["artefacts"]!["crosscoder_weights"]!["sha256"] = Hashing.Sha256File(Path.Combine(other, CrosscoderWeights.WeightsFileName));
        honest["artefacts"]!["crosscoder_config"]!["sha256"] = Hashing.Sha256File(Path.Combine(other, CrosscoderConfig.FileName));
        honest["result"]!["b0"] = 1e-4;
        var v = new Forger(world, other).Check(honest);
        Assert.False(v.Accepted);
        Assert.Equal(0, v.StepsChecked);
        Assert.Contains($"d_model {d} differs from the model's d_model {c.DModel}", v.Reason);
    }
}
