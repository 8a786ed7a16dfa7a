using Verifier.Core;
using Verifier.Model;
using static TorchSharp.torch;

namespace Verifier.Crosscoders;

/// <summary>Residual-stream activations at chosen sites, collected through the model on demand into a shuffled
/// buffer of bounded size that refills as it is consumed. When the whole dataset's activations fit, they are
/// computed once and reshuffled every pass; otherwise at most <c>capacity</c> tokens are held at a time.</summary>
public sealed class ActivationBuffer : IDisposable
{
    readonly (Transformer Model, int[] Sites)[] _models;
    readonly IReadOnlyList<Sequence> _seqs;
    readonly int _sites, _dModel;
    readonly Rng _rng;
    readonly Generator _gen;
    int[] _order;
    int _orderPos;
    Tensor? _carry;
    Tensor _buffer;            // [capacity, S, d] float32
    long _read;

    public long Capacity { get; }
    public long TotalTokens { get; }
    public bool HoldsEverything => Capacity == TotalTokens;
    public long TokensServed { get; private set; }

    /// <param name="siteIndex">Indices into ModelConfig.SiteNames() of the sites to collect, in crosscoder order.</param>
    /// <param name="maxBytes">Upper bound on the buffer's size in bytes.</param>
    public ActivationBuffer(Transformer model, IReadOnlyList<Sequence> sequences, int[] siteIndex, long maxBytes, ulong seed)
        : this([(model, siteIndex)], sequences, maxBytes, seed) { }

    /// <summary>Several models on the same tokens (model diffing): each token's sites are model 0's chosen sites, then
    /// model 1's, and so on. All models must share d_model.</summary>
    public ActivationBuffer(IReadOnlyList<(Transformer Model, int[] Sites)> models, IReadOnlyList<Sequence> sequences, long maxBytes, ulong seed)
    {
        if (sequences.Count == 0) throw new ArgumentException("no sequences to collect activations from");
        if (models.Select(m => m.Model.Config.DModel).Distinct().Count() != 1) throw new ArgumentException("models must share d_model");
        _models = models.ToArray(); _seqs = sequences;
        _sites = models.Sum(m => m.Sites.Length); _dModel = models[0].Model.Config.DModel;
        _rng = Rng.Derive(seed, "crosscoder/buffer");
        _gen = new Generator(seed ^ 0x5eedUL);
        TotalTokens = sequences.Sum(s => (long)s.Tokens.Length);
        long bytesPerToken = 4L * _sites * _dModel;
        Capacity = Math.Max(1, Math.Min(TotalTokens, maxBytes / bytesPerToken));
        _order = Shuffled();
        _buffer = Collect(Capacity);
        Shuffle();
    }

    int[] Shuffled()
    {
        var o = Enumerable.Range(0, _seqs.Count).ToArray();
        for (int i = o.Length - 1; i > 0; i--) { int j = _rng.NextInt(i + 1); (o[i], o[j]) = (o[j], o[i]); }
        return o;
    }

    /// <summary>The first fill, for statistics (normalisation scales, decoder bias): [capacity, S, d].</summary>
    public Tensor Peek() => _buffer;

    /// <summary>The next <paramref name="count"/> tokens' activations [count, S, d] from the sequence stream.</summary>
    Tensor Collect(long count)
    {
        var parts = new List<Tensor>();
        long have = 0;
        if (_carry is not null) { parts.Add(_carry); have += _carry.shape[0]; _carry = null; }
        using (no_grad())
        {
            while (have < count)
            {
                var chunk = new List<Sequence>();
                while (chunk.Count < 256)
                {
                    if (_orderPos == _order.Length) { _order = Shuffled(); _orderPos = 0; }
                    chunk.Add(_seqs[_order[_orderPos++]]);
                    if (chunk.Count * (long)chunk[0].Tokens.Length >= count - have) break;
                }
                foreach (var group in chunk.GroupBy(s => s.Tokens.Length))
                {
                    using var scope = NewDisposeScope();
                    var (tokens, _) = Transformer.Batch(group.ToList());
                    var chosen = new List<Tensor>();
                    foreach (var (m, idx) in _models)
                    {
                        var sites = new List<Tensor>();
                        m.Forward(tokens, sites);
                        chosen.AddRange(idx.Select(i => sites[i].to(ScalarType.Float32)));
                    }
                    var acts = stack(chosen.ToArray(), 2);                                // [B, T, S, d]
                    var flat = acts.reshape(-1, _sites, _dModel);
                    parts.Add(flat.DetachFromDisposeScope());
                    have += flat.shape[0];
                }
            }
        }
        var all = (parts.Count == 1 ? parts[0] : cat(parts.ToArray(), 0)).DetachFromDisposeScope();
        if (parts.Count > 1) foreach (var p in parts) p.Dispose();
        if (all.shape[0] > count)
        {
            _carry = all.narrow(0, count, all.shape[0] - count).clone().DetachFromDisposeScope();
            var head = all.narrow(0, 0, count).clone().DetachFromDisposeScope();
            all.Dispose();
            return head;
        }
        return all;
    }

    void Shuffle()
    {
        using var perm = randperm(Capacity, generator: _gen);
        var shuffled = _buffer.index_select(0, perm).DetachFromDisposeScope();
        _buffer.Dispose();
        _buffer = shuffled;
        _read = 0;
    }

    /// <summary>The next batch [batch, S, d] (a fresh tensor the caller disposes).</summary>
    public Tensor Next(int batch)
    {
        if (batch > Capacity) batch = (int)Capacity;
        if (_read + batch > Capacity || (!HoldsEverything && _read >= Capacity / 2))
        {
            if (!HoldsEverything)
            {
                // Replace the consumed part with new activations, then reshuffle everything.
                long consumed = _read;
                using var fresh = Collect(consumed);
                _buffer.narrow(0, 0, consumed).copy_(fresh);
            }
            Shuffle();
        }
        var b = _buffer.narrow(0, _read, batch).clone();
        _read += batch;
        TokensServed += batch;
        return b;
    }

    public void Dispose()
    {
        _buffer.Dispose();
        _carry?.Dispose();
        _gen.Dispose();
    }
}
