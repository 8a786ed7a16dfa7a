using System.Text.Json.Nodes;
using Verifier.Bounds;
using Verifier.Checker;
using Verifier.Core;
using Verifier.TestSupport;

namespace Verifier.Checker.Tests;

/// <summary>Red-team findings against the checker's trust argument (spec/checker.md). Each test builds the offending
/// transcript whole and asserts the checker REFUSES it; each fails until the flaw it names is fixed.</summary>
public class RedTeamTests
{
    static string Lemma(JsonNode s) => s["lemma"]!.GetValue<string>();

    static void Renumber(JsonArray steps, Func<int, int> map)
    {
        foreach (var s in steps)
        {
            s!["id"] = map(s["id"]!.GetValue<int>());
            var inputs = s["inputs"]!.AsArray();
            for (int k = 0; k < inputs.Count; k++) inputs[k] = map(inputs[k]!.GetValue<int>());
        }
    }

    /// <summary>FLAW (INFO, cost accounting; spec/costs.md "INFO: L·H·f²·(2dh + 2), f = number of distinct features
    /// in the advice"). TranscriptChecker.InfoStep counts f as the features of the L2 steps checked *so far*
    /// (_featuresSeen), not of the whole transcript. The INFO step only needs the T1 table step as input, so a prover
    /// may place it right after the table step, before any L2: the checker then requires cost 0 and accepts a
    /// transcript whose flops / flops_dataset_independent / bits understate the strategy's work. (Not a false b₀, but
    /// a transcript the checker should refuse: the reported proof length is false.) Fix: count INFO's cost after the
    /// last step (e.g. require INFO to follow every L2 step, or check its figure at MEAN with the final feature set).</summary>
    [Fact]
    public void Info_step_moved_before_the_advice_cannot_understate_the_cost()
    {
        using var world = new RandomWorld(11, layers: 1);
        var cc = world.RandomCrosscoder(12, 6, 2);
        var t = JsonNode.Parse(File.ReadAllText(world.Bound(Strategies.CrosscoderTables, cc, computeTrueLoss: false).Transcript))!.AsObject();
        var forger = new Forger(world, world.CcDir);
        Assert.True(forger.Check(t).Accepted);
        long honestFlops = t["cost"]!["flops"]!.GetValue<long>();
        var steps = t["steps"]!.AsArray();
        int info = steps.Select((s, i) => (s, i)).Single(x => Lemma(x.s!) == "INFO").i;
        int table = steps.Select((s, i) => (s, i)).Single(x => Lemma(x.s!) == "T1" && x.s!["inputs"]!.AsArray().Count == 0).i;
        Assert.True(steps[info]!["cost"]!["flops"]!.GetValue<long>() > 0, "the honest INFO step must carry work, or the test proves nothing");

        // Move INFO from the end to just after the table step (nothing refers to it), and let the repair set its
        // cost and the totals to what the checker counts.
        var moved = steps[info]!.DeepClone().AsObject();
        steps.RemoveAt(info);
        Renumber(steps, i => i > info ? i - 1 : i);
        Forger.Insert(steps, table + 1, moved);
        var v = forger.Repair(t);
        long forgedFlops = t["cost"]!["flops"]!.GetValue<long>();
        Assert.False(v.Accepted && forgedFlops < honestFlops,
            $"accepted with cost.flops {forgedFlops} < the honest {honestFlops}: the INFO step's f² work was counted as 0");
    }

    /// <summary>FLAW (artefacts; spec/checker.md §0 "The transcript names each artefact by SHA-256; a transcript
    /// replayed against other files is refused", spec/transcript.md "crosscoder_weights … crosscoder strategies
    /// only"). CheckArtefacts requires only model_weights, model_config and dataset. A crosscoder-strategy transcript
    /// that names no crosscoder is accepted against whatever --crosscoder directory it is given, so the transcript does
    /// not pin the artefact its advice was computed with (b₀ stays true — any crosscoder is valid advice — but the
    /// transcript is structurally incomplete and the check record no longer identifies what was checked). Fix: for
    /// the strategies that need a crosscoder, require crosscoder_weights and crosscoder_config.</summary>
    [Fact]
    public void Crosscoder_transcript_that_names_no_crosscoder_is_refused()
    {
        using var world = new RandomWorld(11, layers: 1);
        var cc = world.RandomCrosscoder(12, 6, 2);
        foreach (var strategy in new[] { Strategies.CrosscoderTables, Strategies.CrosscoderExhaustive })
        {
            var t = JsonNode.Parse(File.ReadAllText(world.Bound(strategy, cc, computeTrueLoss: false).Transcript))!.AsObject();
            var artefacts = t["artefacts"]!.AsObject();
            artefacts.Remove("crosscoder_weights"); artefacts.Remove("crosscoder_config");
            var v = new Forger(world, world.CcDir).Check(t);
            Assert.False(v.Accepted, $"{strategy}: a transcript naming no crosscoder was accepted ({v.Summary})");
        }
    }

    /// <summary>FLAW (artefacts → the model's function; spec/checker.md §1 "every config field implemented, listed as
    /// inert, or refused by name", spec/model.md "a directory written by TransformerLens loads as is"). ModelConfig.Parse
    /// silently ignores every field it does not list, including TransformerLens fields that change the function:
    /// `output_logits_soft_cap` (logits ← c·tanh(logits/c)), `attn_scores_soft_cap` (the same on attention scores) and
    /// `scale_attn_by_inverse_layer_idx` (layer l's scores divided by l + 1). The checker then certifies the loss of
    /// another function than the one the config describes. Here: a TransformerLens config with
    /// output_logits_soft_cap = 0.05, labels set to the uncapped model's arg-max, an honest brute-force transcript
    /// (b₀ ≈ the uncapped loss < log V) is accepted, while the model's true loss (capped logits, ≈ log V) is higher.
    /// Fix: refuse (UnsupportedConfigException) output_logits_soft_cap > 0, attn_scores_soft_cap > 0,
    /// scale_attn_by_inverse_layer_idx = true — better, refuse every field not explicitly listed as inert.</summary>
    [Fact]
    public void Config_field_that_changes_the_function_is_refused_not_ignored()
    {
        using var world = new RandomWorld(7, layers: 1);
        var w = world.Model; int V = w.Config.DVocabOut;
        // Label every position with the uncapped model's arg-max: its loss is then below log V.
        var seqs = world.Data.Sequences.Select(s =>
        {
            var z = ReferenceForward.Run(w, s.Tokens).Logits;
            var labels = Enumerable.Range(0, s.Tokens.Length).Select(t => Enumerable.Range(0, V).MaxBy(i => z[t, i])).ToArray();
            return new Sequence(s.Tokens, labels);
        }).ToList();
        var data = new TokenDataset(seqs);
        string dataPath = Path.Combine(world.Dir, "argmax.jsonl");
        data.Save(dataPath);

        // An honest transcript of the model as saved, then the config gains the soft cap: the checker must refuse to
        // certify anything about a model whose config asks for a function it does not compute.
        string path = Path.Combine(world.Dir, "bf.json");
        BoundProgram.Run(Strategies.BruteForce, new BoundInputs(world.Model, world.Dir, data, dataPath), path, computeTrueLoss: false);
        const double cap = 0.05;
        string cfgPath = Path.Combine(world.Dir, ModelConfig.FileName);
        var cfg = JsonNode.Parse(File.ReadAllText(cfgPath))!.AsObject();
        cfg["output_logits_soft_cap"] = cap;                    // a TransformerLens HookedTransformerConfig field
        File.WriteAllText(cfgPath, cfg.ToJsonString());
        var load = Assert.Throws<UnsupportedConfigException>(() => ModelWeights.Load(world.Dir));
        Assert.Contains("output_logits_soft_cap", load.Message);
        var check = Assert.Throws<UnsupportedConfigException>(() => TranscriptChecker.Check(path, world.Dir, null, dataPath));
        Assert.Contains("output_logits_soft_cap", check.Message);
    }
}
