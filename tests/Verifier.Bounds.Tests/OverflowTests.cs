using Verifier.Bounds;
using Verifier.Core;
using Verifier.TestSupport;

namespace Verifier.Bounds.Tests;

/// <summary>Issue 10 case 5: finite weights whose forward pass overflows give a clear NumericException naming the
/// model file (exit 9), never an ArgumentException from deep inside the interval arithmetic or a NaN loss.</summary>
public class OverflowTests
{
    static (ModelWeights Huge, string Dir) HugeUnembedding(RandomWorld f)
    {
        var tensors = f.Model.Tensors.ToDictionary(p => p.Key, p => p.Value);
        var wu = tensors["unembed.W_U"];
        int V = f.Model.Config.DVocabOut;
        // Column v of W_U is +3e307 for even v, −3e307 for odd v; with a large embedding every logit overflows.
        tensors["unembed.W_U"] = new NamedTensor(wu.Name, wu.Shape, wu.Data.Select((_, i) => i % V % 2 == 0 ? 3e307 : -3e307).ToArray(), "F64");
        var we = tensors["embed.W_E"];
        tensors["embed.W_E"] = new NamedTensor(we.Name, we.Shape, we.Data.Select(_ => 1e3).ToArray(), "F64");
        string dir = Path.Combine(f.Dir, "huge");
        Directory.CreateDirectory(dir);
        new ModelWeights(f.Model.Config, tensors).SaveInto(dir);
        return (ModelWeights.Load(dir), dir);
    }

    [Theory]
    [InlineData(Strategies.BruteForce)]
    [InlineData(Strategies.Trivial)]
    public void A_bound_whose_forward_pass_overflows_is_a_numeric_error_naming_the_model(string strategy)
    {
        using var f = new RandomWorld(3);
        var (huge, dir) = HugeUnembedding(f);
        string outPath = Path.Combine(f.Dir, "t.json");
        var e = Assert.Throws<NumericException>(() => BoundProgram.Run(strategy, new BoundInputs(huge, dir, f.Data, f.DataPath), outPath));
        Assert.Equal(ExitCodes.Numeric, e.ExitCode);
        Assert.StartsWith(Path.Combine(dir, ModelWeights.WeightsFileName) + ": ", e.Message);
        Assert.Contains("not finite", e.Message);
        Assert.False(File.Exists(outPath));
        Assert.Empty(Directory.EnumerateFiles(f.Dir, "t.json*"));
    }

    [Fact]
    public void The_reference_loss_of_an_overflowing_model_is_a_numeric_error_not_NaN()
    {
        using var f = new RandomWorld(3);
        var (huge, _) = HugeUnembedding(f);
        var e = Assert.Throws<NumericException>(() => ReferenceForward.Evaluate(huge, f.Data));
        Assert.Contains("sequence 1, position", e.Message);
        Assert.Contains("overflows", e.Message);
    }

    [Fact]
    public void Bound_refuses_to_replace_an_existing_transcript_unless_asked()
    {
        using var f = new RandomWorld(4);
        string outPath = Path.Combine(f.Dir, "t.json");
        File.WriteAllText(outPath, "theirs");
        Assert.Throws<OutputExistsException>(() => BoundProgram.Run(Strategies.Trivial, new BoundInputs(f.Model, f.Dir, f.Data, f.DataPath), outPath));
        Assert.Equal("theirs", File.ReadAllText(outPath));
        Assert.Single(Directory.EnumerateFiles(f.Dir, "t.json*"));
        BoundProgram.Run(Strategies.Trivial, new BoundInputs(f.Model, f.Dir, f.Data, f.DataPath), outPath, overwrite: true);
        Assert.StartsWith("{\"schema\"", File.ReadAllText(outPath));
    }
}
