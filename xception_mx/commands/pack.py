"""``xception-pack``: write an image folder as indexed RecordIO for xception-finetune."""
from xception_mx.commands.arguments import add_force
from xception_mx.commands.runner import Parser, run
from xception_mx.images.pack import PROG, pack_folder


def build_parser():
    parser = Parser(prog=PROG, description="Write an image folder (one subfolder per class) "
                    "as indexed RecordIO for xception-finetune.")
    parser.add_argument("folder", metavar="FOLDER", help="image folder, one subfolder per "
                        "class (the sorted subfolder names are the class names)")
    parser.add_argument("out", metavar="OUT", help="output prefix: OUT.rec, OUT.idx, "
                        "OUT.labels.txt")
    parser.add_argument("--resize", type=int, default=0, metavar="N",
                        help="re-encode as JPEG with the shorter side scaled to N (default: "
                             "keep the original bytes)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality with --resize")
    add_force(parser)
    return parser


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    parser.check_minimums(args, resize=0)
    paths, count = pack_folder(args.folder, args.out, args.resize, args.quality, args.force)
    print("%s: %d images -> %s" % (PROG, count, ", ".join(paths)))
    return 0


def main(argv=None):
    return run(PROG, _main, argv)

