use factum::Command;

#[derive(Command)]
enum C {
    Place {
        #[command(id)]
        order_id: String,
    },
    Cancel {
        order_id: String,
    },
}

fn main() {}
