// repclass motifs: the sequences, residues and motifs behind a model's predictions on a store
// (sequences.tsv, repertoires.tsv, motifs.tsv, motifs.json, logos/, report.html).
// Options (--sample, --class, --top-sequences, --motifs, --ig-steps, --seed): task.ext.args.
process REPCLASS_MOTIFS {
    tag "${meta.id}"
    label 'process_medium'
    label 'process_gpu'

    input:
    tuple val(meta), path(model), path(store)

    output:
    tuple val(meta), path("*.motifs")                , emit: motifs
    tuple val(meta), path("*.motifs/report.html")    , emit: report
    tuple val(meta), path("*.motifs/motifs.tsv")     , emit: tsv
    tuple val(meta), path("*.motifs/sequences.tsv")  , emit: sequences
    path "versions.yml"                              , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def device = task.ext.use_gpu ? 'cuda' : 'cpu'
    """
    repclass motifs \\
        ${model} \\
        ${store} \\
        --out ${prefix}.motifs \\
        --device ${device} \\
        --threads ${task.cpus} \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        repclass: \$(repclass --version)
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}.motifs
    touch ${prefix}.motifs/report.html ${prefix}.motifs/motifs.tsv ${prefix}.motifs/sequences.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        repclass: \$(repclass --version)
    END_VERSIONS
    """
}
