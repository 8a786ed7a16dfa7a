using System.Text.Json;

namespace Verifier.Checker;

/// <summary>Reads a JSON document from a stream a piece at a time, so a transcript is never held whole in
/// memory: a buffer that grows only to the size of the largest single value the caller asks for.</summary>
public sealed class JsonStream(Stream stream) : IDisposable
{
    byte[] _buf = new byte[1 << 16];
    int _start, _end;
    bool _final;
    JsonReaderState _state = new(new JsonReaderOptions { MaxDepth = 64 });
    readonly System.Security.Cryptography.IncrementalHash _hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
    public long BytesRead { get; private set; }

    /// <summary>SHA-256 of every byte read so far: after <see cref="End"/>, of exactly the document that was checked.</summary>
    public string Sha256() => Convert.ToHexStringLower(_hash.GetCurrentHash());

    public delegate bool Op<T>(ref Utf8JsonReader r, out T result);

    /// <summary>Runs <paramref name="op"/> on a reader over the buffered bytes; when it reports that it ran out
    /// of data, more is read and it is retried from the same state.</summary>
    public T Run<T>(Op<T> op)
    {
        while (true)
        {
            var r = new Utf8JsonReader(_buf.AsSpan(_start, _end - _start), _final, _state);
            bool done;
            T result;
            try { done = op(ref r, out result); }
            catch (JsonException e) when (_final)
            { throw new CheckFailure("format", $"not valid JSON (truncated or corrupt): {e.Message}"); }
            if (done)
            {
                _start += (int)r.BytesConsumed;
                _state = r.CurrentState;
                return result;
            }
            if (_final) throw new CheckFailure("format", "the transcript ends in the middle of a JSON value (truncated?)");
            Refill();
        }
    }

    void Refill()
    {
        if (_start > 0) { Buffer.BlockCopy(_buf, _start, _buf, 0, _end - _start); _end -= _start; _start = 0; }
        if (_end == _buf.Length) Array.Resize(ref _buf, _buf.Length * 2);
        int n = stream.Read(_buf, _end, _buf.Length - _end);
        if (n == 0) _final = true;
        _hash.AppendData(_buf, _end, n);
        _end += n;
        BytesRead += n;
    }

    public JsonTokenType Token() => Run((ref Utf8JsonReader r, out JsonTokenType t) =>
    {
        t = JsonTokenType.None;
        if (!r.Read()) return false;
        t = r.TokenType;
        return true;
    });

    public string PropertyName() => Run((ref Utf8JsonReader r, out string name) =>
    {
        name = "";
        if (!r.Read()) return false;
        if (r.TokenType == JsonTokenType.EndObject) { name = ""; return true; }
        if (r.TokenType != JsonTokenType.PropertyName) throw new CheckFailure("format", $"expected a property name, found {r.TokenType}");
        name = r.GetString()!;
        return true;
    });

    /// <summary>The next complete value (after a property name).</summary>
    public JsonDocument Value() => Run((ref Utf8JsonReader r, out JsonDocument doc) => JsonDocument.TryParseValue(ref r, out doc!));

    /// <summary>The next element of an array, or null at its end.</summary>
    public JsonDocument? Element() => Run((ref Utf8JsonReader r, out JsonDocument? doc) =>
    {
        doc = null;
        if (!r.Read()) return false;
        if (r.TokenType == JsonTokenType.EndArray) return true;
        return JsonDocument.TryParseValue(ref r, out doc);
    });

    /// <summary>After the document: nothing but whitespace may follow (a second value, or any text, is refused).</summary>
    public void End()
    {
        while (true)
        {
            var r = new Utf8JsonReader(_buf.AsSpan(_start, _end - _start), _final, _state);
            bool more;
            try { more = r.Read(); }
            catch (JsonException) { more = true; }
            if (more) throw new CheckFailure("format", "content after the end of the transcript's JSON object");
            if (_final) return;
            _start += (int)r.BytesConsumed;
            _state = r.CurrentState;
            Refill();
        }
    }

    /// <summary>A key given twice in one object is refused at any depth: readers disagree on which one wins.</summary>
    public static void RefuseDuplicateKeys(JsonElement e, string where)
    {
        if (e.ValueKind == JsonValueKind.Array)
            foreach (var x in e.EnumerateArray()) RefuseDuplicateKeys(x, where);
        else if (e.ValueKind == JsonValueKind.Object)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in e.EnumerateObject())
            {
                if (!seen.Add(p.Name)) throw new CheckFailure("format", $"{where}: the key '{p.Name}' appears twice in one object");
                RefuseDuplicateKeys(p.Value, where);
            }
        }
    }

    public void Dispose() { stream.Dispose(); _hash.Dispose(); }
}
