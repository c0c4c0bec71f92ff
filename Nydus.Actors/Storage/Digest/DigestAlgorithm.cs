namespace Nydus.Actors.Storage.Digest;

/// <summary>Chunk digest algorithm, numbered as in the RAFS v6 blob table (<c>digest_algo</c>).</summary>
public enum DigestAlgorithm
{
    Blake3 = 0,
    Sha256 = 1,
}
