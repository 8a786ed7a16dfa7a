using System.Text.Json.Nodes;
using FsCheck.Xunit;
using Verifier.Bounds;
using Verifier.Checker;
using Verifier.Core;
using Verifier.TestSupport;

namespace Verifier.Checker.Tests;

public class CompactCheckerTests
{
    sealed class OneLayer : IDisposable
    {
        public readonly RandomWorld W;
        public readonly CrosscoderWeights Cc;
        public OneLayer(ulong seed, bool attnOnly) { W = new RandomWorld(seed, attnOnly); Cc = W.RandomCrosscoder(seed + 1, 6, 2); }
        public string Transcript(string strategy, double budget = 0.4, Func<int, (int Index, double Value)[][], (int Index, double Value)[][]>? advice = null)
        {
            string path = Path.Combine(W.Dir, strategy + ".json");
            CompactStrategy.Run(new BoundInputs(W.Model, W.Dir, W.Data, W.DataPath, Cc, W.CcDir), path, strategy == Strategies.Mixed ? budget : null, null, default, advice);
            return path;
        }
        public Verdict Check(string path) => TranscriptChecker.Check(path, W.Dir, W.CcDir, W.DataPath);
        public void Dispose() => W.Dispose();
    }

    [Property(MaxTest = 15)]
    public void Compact_and_mixed_transcripts_are_accepted(ulong seed, bool attnOnly)
    {
        using var w = new OneLayer(seed, attnOnly);
        foreach (var s in Strategies.OneLayer)
        {
            var v = w.Check(w.Transcript(s));
            Assert.True(v.Accepted, $"{s}: {v.Summary}");
        }
    }

    [Property(MaxTest = 10)]
    public void Every_lowered_claim_and_every_raised_lower_bound_is_rejected(ulong seed, bool attnOnly)
    {
        using var w = new OneLayer(seed, attnOnly);
        var r = new Rng(seed ^ 0xBEEF);
        foreach (var strategy in Strategies.OneLayer)
        {
            string path = w.Transcript(strategy);
            Assert.True(w.Check(path).Accepted, $"{strategy}: the unmutated transcript must be accepted");
            string original = File.ReadAllText(path);
            var steps = JsonNode.Parse(original)!["steps"]!.AsArray();
            for (int i = 0; i < steps.Count; i++)
            {
                var claim = steps[i]!["claim"]!.AsObject();
                foreach (var (name, node) in claim.ToList())
                {
                    var t = JsonNode.Parse(original)!.AsObject();
                    var c = t["steps"]![i]!["claim"]!.AsObject();
                    double x = node!.GetValue<double>();
                    string what;
                    if (name is "correct" or "accuracy_lb")
                    {
                        // Lower bounds: raising them past the certified count must be refused.
                        double raised = name == "correct" ? x + 1 : x + 0.5 / w.W.Data.LabelledPositions + 1e-9;
                        c[name] = raised; what = $"{name} raised {x} → {raised}";
                    }
                    else
                    {
                        if (x <= 1e-6) continue;
                        double lower = x * (1 - 1e-6) - 1e-9;
                        c[name] = lower; what = $"{name} lowered {x} → {lower}";
                        if (name == "b0") t["result"]!["b0"] = lower;
                    }
                    string mutated = Path.Combine(w.W.Dir, "mutated.json");
                    File.WriteAllText(mutated, t.ToJsonString());
                    var v = w.Check(mutated);
                    Assert.False(v.Accepted, $"{strategy} step {i}: {what} was accepted");
                }
            }
            // Rewiring: a CC step pointed at another step, a MEAN input duplicated, a feature index out of range.
            var t2 = JsonNode.Parse(original)!.AsObject();
            var s2 = t2["steps"]!.AsArray();
            var cc = s2.FirstOrDefault(s => s!["lemma"]!.GetValue<string>() == "CC");
            if (cc is not null && s2.Count > 3)
            {
                cc["inputs"] = new JsonArray(cc["id"]!.GetValue<int>() - 1 == 0 ? 0 : cc["id"]!.GetValue<int>() - 1);
                File.WriteAllText(Path.Combine(w.W.Dir, "m2.json"), t2.ToJsonString());
                var v2 = w.Check(Path.Combine(w.W.Dir, "m2.json"));
                Assert.True(!v2.Accepted || cc["inputs"]![0]!.GetValue<int>() == 0, "a CC step must take the CT step");
            }
            var t3 = JsonNode.Parse(original)!.AsObject();
            var mean = t3["steps"]!.AsArray()[^1]!;
            var ins = mean["inputs"]!.AsArray();
            if (ins.Count > 1) { ins[1] = ins[0]!.GetValue<int>(); File.WriteAllText(Path.Combine(w.W.Dir, "m3.json"), t3.ToJsonString()); Assert.False(w.Check(Path.Combine(w.W.Dir, "m3.json")).Accepted); }
            var t4 = JsonNode.Parse(original)!.AsObject();
            var withFeature = t4["steps"]!.AsArray().FirstOrDefault(s => s!["lemma"]!.GetValue<string>() == "CC" && s["data"]!["features"]!.AsArray().Any(f => f!.AsArray().Count > 0));
            if (withFeature is not null)
            {
                var list = withFeature["data"]!["features"]!.AsArray().First(f => f!.AsArray().Count > 0)!.AsArray();
                list[0]![0] = w.Cc.Config.Width;
                File.WriteAllText(Path.Combine(w.W.Dir, "m4.json"), t4.ToJsonString());
                Assert.False(w.Check(Path.Combine(w.W.Dir, "m4.json")).Accepted, "a feature index ≥ width must be refused");
            }
        }
    }

    [Property(MaxTest = 10)]
    public bool Arbitrary_advice_is_accepted_only_with_a_bound_above_the_true_loss(ulong seed, bool attnOnly, bool keepClaims)
    {
        using var w = new OneLayer(seed, attnOnly);
        double truth = ReferenceForward.Evaluate(w.W.Model, w.W.Data).Loss;
        var rng = new Rng(seed ^ 0x5EED);
        (int, double)[][] Junk(int q, (int Index, double Value)[][] real) => real.Select(ft => ft.Length == 0 ? ft :
            Enumerable.Range(0, 6).Where(_ => rng.NextInt(2) == 0).Select(i => (i, (rng.NextDouble() - 0.5) * 30)).ToArray()).ToArray();
        string path;
        if (keepClaims)
        {
            // The real claims with junk advice swapped in: a replay must refuse it or still certify a true bound.
            path = w.Transcript(Strategies.CrosscoderCompact);
            var t = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            foreach (var s in t["steps"]!.AsArray().Where(s => s!["lemma"]!.GetValue<string>() == "CC"))
                foreach (var ft in s!["data"]!["features"]!.AsArray())
                    for (int k = 0; k < ft!.AsArray().Count; k++) ft[k]![1] = (rng.NextDouble() - 0.5) * 30;
            File.WriteAllText(path, t.ToJsonString());
        }
        else path = w.Transcript(Strategies.CrosscoderCompact, advice: Junk);
        var v = w.Check(path);
        return !v.Accepted || v.B0 >= truth - 1e-12 * Math.Max(1, truth);
    }

    [Fact]
    public void A_compact_transcript_against_a_two_layer_model_is_refused()
    {
        using var one = new OneLayer(2, false);
        string path = one.Transcript(Strategies.CrosscoderCompact);
        using var two = new RandomWorld(3, layers: 2);
        // Same files, but the checker is pointed at a two-layer model: the hashes already differ; the structure check
        // must also hold if they did not, so check the reason mentions the artefact.
        try { Assert.False(TranscriptChecker.Check(path, two.Dir, one.W.CcDir, one.W.DataPath).Accepted); }
        catch (VerifierException) { /* refused before replay: the dataset or crosscoder does not fit the other model */ }
    }
}
