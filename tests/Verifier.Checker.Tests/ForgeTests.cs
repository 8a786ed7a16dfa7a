using Verifier.Core;
using Xunit.Abstractions;

namespace Verifier.Checker.Tests;

/// <summary>The forger's large-logit cases, judged by the law of BOUNDS.md §1: the model is the exact real-number function
/// of its weights, so a certified value must bound the exact cross-entropy, which here has a closed form. ReferenceForward's
/// float64 loss is not that value at these magnitudes (fl(2⁵² + ln 2) − 2⁵² = 1; fl(2⁴⁰ + 1.46e-4) − 2⁴⁰ = 2⁻¹²), so these
/// tests compare with the closed form, and a claim a hair below the certified value is still rejected.</summary>
public class ForgeTests(ITestOutputHelper output)
{
    static ModelConfig Config(bool basic)
    {
        var c = ModelConfig.Create(8, 2, 4, 12, 1, 4, 7, 2, false);
        return basic ? c : c with { Normalization = NormKind.LN, Act = ActKind.Gelu };
    }

    /// <summary>W_U = 0, b_U = (2⁵², 2⁵²): every logit is exactly 2⁵², the exact CE of every position ln 2.</summary>
    [Theory]
    [InlineData("IP", false)]
    [InlineData("CL", false)]
    [InlineData("BF", false)]
    [InlineData("IP", true)]
    [InlineData("BF", true)]
    public void Equal_logits_at_2_52_certify_at_least_ln2_and_a_lower_claim_is_rejected(string lemma, bool basic)
    {
        using var w = new ArchWorld(Config(basic), 3, edit: m =>
        {
            Array.Fill(m["unembed.W_U"].Data, 0.0);
            Array.Fill(m["unembed.b_U"].Data, 4503599627370496.0);
        });
        Func<Func<double, double>, System.Text.Json.Nodes.JsonObject> build = lemma switch
        {
            "IP" => f => w.Trivial((_, _, c) => f(c)),
            "CL" => f => w.Clustered(f),
            _ => f => w.BruteForce((_, c) => f(c)),
        };
        var honest = w.Check(build(c => c));
        output.WriteLine($"{lemma} basic {basic}: {honest.Summary}; b0 {honest.B0:R}; exact ln 2 = {Math.Log(2):R}; float64 reference {ReferenceForward.Evaluate(w.Model, w.Data).Loss:R}");
        Assert.True(honest.Accepted, honest.Summary);
        Assert.True(honest.B0 >= Math.Log(2), $"b0 {honest.B0:R} below the exact ln 2");
        Assert.False(w.Check(build(c => c * (1 - 1e-9))).Accepted);
    }

    /// <summary>b_U = (2⁴⁰, fl(2⁴⁰ − 8.83)), W_U = 0, every label 0: the exact CE is ln(1 + e^δ) with δ = b_1 − b_0 exactly
    /// (a float64 difference of two floats this close is exact), ≈ 1.46e-4.</summary>
    [Theory]
    [InlineData("BF", false)]
    [InlineData("BFB", false)]
    [InlineData("BF", true)]
    [InlineData("BFB", true)]
    public void A_leading_label_at_2_40_is_bounded_against_the_exact_loss(string lemma, bool basic)
    {
        const double big = 1099511627776.0;   // 2^40
        double second = big - 8.83, delta = second - big;
        for (ulong seed = 1; seed < 200; seed++)
        {
            using var w = new ArchWorld(Config(basic), seed, sequences: 1, edit: m =>
            {
                Array.Fill(m["unembed.W_U"].Data, 0.0);
                var b = m["unembed.b_U"].Data; b[0] = big; b[1] = second;
            });
            var seq = w.Data.Sequences[0];
            if (seq.Labels.Any(y => y == 1)) continue;
            double exact = seq.LabelledCount * Math.Log(1 + Math.Exp(delta));
            // Claims 1 % above the test harness's own enclosure (the basic BFB kernel is wider than the scalar path it uses).
            var honest = w.Check(lemma == "BF" ? w.BruteForce((_, c) => 1.01 * c) : w.BruteForceBlocks((_, c) => 1.01 * c));
            output.WriteLine($"{lemma} basic {basic} seed {seed}: {honest.Summary}; b0 {honest.B0:R}; exact mean {exact / seq.LabelledCount:R}");
            Assert.True(honest.Accepted, honest.Summary);
            Assert.True(honest.B0 * seq.LabelledCount >= exact * (1 - 1e-12), $"b0 {honest.B0:R} below the exact mean {exact / seq.LabelledCount:R}");
            // A claim just below the exact loss (the float64 reference would call it 40 % low) is rejected.
            double low = exact * (1 - 1e-6);
            Assert.False(w.Check(lemma == "BF" ? w.BruteForce((_, _) => low) : w.BruteForceBlocks((_, _) => low)).Accepted);
            return;
        }
        Assert.Fail("no seed with only label-0 positions");
    }
}
